r"""Population statistic estimation (Section 4.1.2 of the `"Deep Sets"
<https://arxiv.org/abs/1703.06114>`_ paper): regress a statistic of a
Gaussian (the entropy of a rotated 2-D Gaussian's first coordinate, or a
mutual information) from a sample of 300-500 of its points, for a range of
training-set sizes; the paper reports that the test error falls as the
number of training sets grows.

:math:`\phi` and :math:`\rho` are 3-layer MLPs as in the paper; the pooling
is the mean, since the statistics do not depend on the sample size. Targets
are standardised with the training mean and deviation, and the test MSE is
reported in the original units.
"""
import argparse
import os.path as osp
from typing import Any, Dict, List

import torch.nn.functional as F
from torch import Tensor, nn

from torch_geometric.data import Batch
from torch_geometric_deepsets.datasets import PopulationStatistics
from torch_geometric_deepsets.datasets.population import (
    TASKS,
    gaussian_entropy,
    gaussian_mutual_information,
)
from torch_geometric_deepsets.experiments._common import (
    Outcome,
    add_common_arguments,
    build_datasets,
    final_evaluation,
    format_table,
    make_trainer,
    positive_int,
    predict,
    save_plot,
    write_results,
)
from torch_geometric_deepsets.models import DeepSetsInvariant
from torch_geometric_deepsets.training import (
    DistributedContext,
    seed_everything,
)

NAME = 'population_statistics'
HELP = ('entropy / mutual information of a Gaussian from a sample of '
        '300-500 points; test MSE against the number of training sets')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, NAME, steps=1500, batch_size=32, lr=1e-3)
    group = parser.add_argument_group(NAME)
    group.add_argument('--task', choices=TASKS, default='rotation',
                       help='which statistic (default: rotation, the '
                       'entropy of a rotated 2-D Gaussian)')
    group.add_argument('--dim', type=positive_int, default=32,
                       help='dimension of the mutual-information tasks '
                       '(default: 32, as in the paper)')
    group.add_argument('--train-sizes', type=positive_int, nargs='+',
                       default=[64, 128, 256, 512, 1024, 2048, 4096],
                       help='numbers of training sets, one model each '
                       '(default: 64 128 ... 4096)')
    group.add_argument('--num-test', type=positive_int, default=512,
                       help='test sets (default: 512)')
    group.add_argument('--min-size', type=positive_int, default=300,
                       help='smallest set (default: 300)')
    group.add_argument('--max-size', type=positive_int, default=500,
                       help='largest set (default: 500)')
    group.add_argument('--hidden', type=positive_int, default=64,
                       help='width of phi and rho (default: 64)')


def build_model(in_channels: int, hidden: int = 64) -> DeepSetsInvariant:
    r"""3-layer :math:`\phi`, mean pooling, 3-layer :math:`\rho`."""
    return DeepSetsInvariant(phi=[in_channels, hidden, hidden, hidden],
                             rho=[hidden, hidden, hidden, 1], aggr='mean')


def forward(model: nn.Module, batch: Batch) -> Tensor:
    return model(batch.x, batch.batch, dim_size=batch.num_graphs).view(-1)


def plug_in_mse(dataset: PopulationStatistics) -> float:
    r"""Test MSE of the classical estimate: the statistic of the sample
    covariance :math:`\frac{1}{M}\sum_m \mathbf{x}_m\mathbf{x}_m^\top`
    (the mean is known to be zero)."""
    errors = []
    for data in dataset:
        x = data.x.double()
        cov = (x.t() @ x / x.size(0)).numpy()
        if dataset.task == 'rotation':
            estimate = gaussian_entropy(float(cov[0, 0]))
        else:
            estimate = gaussian_mutual_information(cov)
        errors.append((estimate - float(data.y))**2)
    return sum(errors) / len(errors)


def run(args: argparse.Namespace, ctx: DistributedContext) -> Outcome:
    root = osp.join(args.data_root, 'population_statistics')
    kwargs = dict(task=args.task, min_size=args.min_size,
                  max_size=args.max_size, dim=args.dim, seed=args.data_seed)
    train_sizes = sorted(set(args.train_sizes))
    # One pool of training sets; the model for n sets trains on the first n.
    pool, test = build_datasets(ctx, lambda: (
        PopulationStatistics(root, split='train', num_sets=train_sizes[-1],
                             **kwargs),
        PopulationStatistics(root, split='test', num_sets=args.num_test,
                             **kwargs),
    ))
    test_y = test.y

    rows: List[Dict[str, Any]] = []
    models: Dict[str, nn.Module] = {}
    for n in train_sizes:
        train = pool[:n]
        train_y = pool.y[:n]
        mean = float(train_y.mean())
        std = float(train_y.std()) if n > 1 else 1.0
        std = std if std > 0 else 1.0

        def loss_fn(model: nn.Module, batch: Batch) -> Tensor:
            return F.mse_loss(forward(model, batch), (batch.y - mean) / std)

        def evaluate(model: nn.Module) -> Dict[str, Any]:
            out, _ = predict(model, test, ctx.device, forward)
            pred = out * std + mean
            return {'test_mse': float(F.mse_loss(pred, test_y))}

        seed_everything(args.seed)
        model = build_model(pool.num_features, args.hidden)
        trainer = make_trainer(args, ctx, model, loss_fn, train, {
            'experiment': NAME,
            'task': args.task,
            'dim': pool.dim,
            'min_size': args.min_size,
            'max_size': args.max_size,
            'hidden': args.hidden,
        }, batch_size=min(args.batch_size, n),
            out_dir=osp.join(args.out, f'n{n}'), desc=f'{NAME} n={n}')
        summary = trainer.fit()
        models[f'n{n}'] = model
        if ctx.is_main:
            rows.append({
                'num_train_sets': n,
                'test_mse': final_evaluation(model, evaluate)['test_mse'],
                'final_train_loss': summary['loss'],
                'train_time_s': round(trainer.elapsed, 2),
            })

    results = None
    if ctx.is_main:
        baseline = float(test_y.var(unbiased=False))
        plug_in = plug_in_mse(test)
        results = {
            'experiment': NAME,
            'task': args.task,
            'dim': pool.dim,
            'steps_per_model': args.steps,
            'test_target_variance': baseline,
            'plug_in_mse': plug_in,
            'per_train_size': rows,
        }
        print(f'\nPopulation statistics ({args.task}, dim {pool.dim}): test '
              f'MSE on {args.num_test} sets against the number of training '
              f'sets ({args.steps} steps each). Predicting the mean scores '
              f'{baseline:.4g}; the sample-covariance plug-in estimate '
              f'{plug_in:.4g}.')
        print(format_table(['training sets', 'test MSE'],
                           [[r['num_train_sets'], r['test_mse']]
                            for r in rows]))
        if not args.no_plot:
            results['plot'] = save_plot(
                osp.join(args.out, f'mse_vs_train_size_{args.task}.png'),
                lambda ax: _plot(ax, rows, args.task, baseline, plug_in))
        print(f'Results: {write_results(args, results)}')
    results = ctx.broadcast_object(results)
    return Outcome(results, models)


def _plot(ax: Any, rows: list, task: str, baseline: float,
          plug_in: float) -> None:
    sizes = [r['num_train_sets'] for r in rows]
    ax.plot(sizes, [r['test_mse'] for r in rows], 'o-', label='Deep Sets')
    ax.axhline(baseline, color='k', linestyle='--',
               label='predicting the mean')
    ax.axhline(plug_in, color='grey', linestyle=':',
               label='sample-covariance plug-in')
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel('number of training sets')
    ax.set_ylabel('test MSE')
    ax.set_title(f'Population statistics: {task}')
    ax.legend()
