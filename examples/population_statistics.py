r"""Population statistic estimation (Section 4.1.2 of the `"Deep Sets"
<https://arxiv.org/abs/1703.06114>`_ paper): regress a statistic of a
Gaussian (the entropy of a rotated 2-D Gaussian's first coordinate, or a
mutual information) from a sample of 300-500 of its points, for a range of
training-set sizes; the paper reports that the test error falls as the
number of training sets grows.

:math:`\phi` and :math:`\rho` are 3-layer MLPs as in the paper; the pooling
is the mean, since the statistics do not depend on the sample size. Targets
are standardised with the training mean and deviation, and the test MSE is
reported in the original units. One model per number of training sets, each
in its own ``--out/n{sets}``.

Usage::

    python examples/population_statistics.py --task rotation
    python examples/population_statistics.py --task correlation
"""
import argparse
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import set_task
import torch.nn.functional as F
from report import format_table, save_plot, write_results
from torch import nn

from torch_geometric_deepsets import DeepSetsInvariant
from torch_geometric_deepsets.datasets import PopulationStatistics
from torch_geometric_deepsets.datasets.population import (
    TASKS,
    gaussian_entropy,
    gaussian_mutual_information,
)
from torch_geometric_deepsets.lightning import (
    SetTask,
    one_process_at_a_time,
    predict,
)


def build_model(in_channels: int, hidden: int = 64) -> DeepSetsInvariant:
    r"""3-layer :math:`\phi`, mean pooling, 3-layer :math:`\rho`."""
    return DeepSetsInvariant(phi=[in_channels, hidden, hidden, hidden],
                             rho=[hidden, hidden, hidden, 1], aggr='mean')


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


def parse_args(argv: Optional[Sequence[str]]) -> tuple:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    set_task.add_arguments(parser, 'population_statistics', max_steps=1500,
                           batch_size=32, lr=1e-3)
    group = parser.add_argument_group('population_statistics')
    group.add_argument('--task', choices=TASKS, default='rotation',
                       help='which statistic (default: rotation, the '
                       'entropy of a rotated 2-D Gaussian)')
    group.add_argument('--data-seed', type=int, default=0,
                       help='seed of the generated sets (default: 0)')
    group.add_argument('--dim', type=set_task.positive_int, default=32,
                       help='dimension of the mutual-information tasks '
                       '(default: 32, as in the paper)')
    group.add_argument('--train-sizes', type=set_task.positive_int,
                       nargs='+', default=[64, 128, 256, 512, 1024, 2048,
                                           4096],
                       help='numbers of training sets, one model each '
                       '(default: 64 128 ... 4096)')
    group.add_argument('--num-test', type=set_task.positive_int, default=512,
                       help='test sets (default: 512)')
    group.add_argument('--min-size', type=set_task.positive_int, default=300,
                       help='smallest set (default: 300)')
    group.add_argument('--max-size', type=set_task.positive_int, default=500,
                       help='largest set (default: 500)')
    group.add_argument('--hidden', type=set_task.positive_int, default=64,
                       help='width of phi and rho (default: 64)')
    return parser, parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> set_task.Outcome:
    parser, args = parse_args(argv)
    root = osp.join(args.data_root, 'population_statistics')
    kwargs = dict(task=args.task, min_size=args.min_size,
                  max_size=args.max_size, dim=args.dim, seed=args.data_seed)
    train_sizes = sorted(set(args.train_sizes))
    # One pool of training sets; the model for n sets trains on the first n.
    with one_process_at_a_time(root):
        pool = PopulationStatistics(root, split='train',
                                    num_sets=train_sizes[-1], **kwargs)
        test = PopulationStatistics(root, split='test',
                                    num_sets=args.num_test, **kwargs)

    rows: List[Dict[str, Any]] = []
    models: Dict[str, nn.Module] = {}
    hparams: Dict[str, Dict[str, Any]] = {}
    batch_size = args.batch_size
    val_every = max(1, args.max_steps // 10) if args.max_steps > 0 else None
    for n in train_sizes:
        train = pool[:n]
        mean = float(pool.y[:n].mean())
        std = float(pool.y[:n].std()) if n > 1 else 1.0
        args.batch_size = min(batch_size, n)
        set_task.seed_everything(args)
        widths = dict(in_channels=pool.num_features, hidden=args.hidden)
        task = SetTask(build_model, widths, loss='mse', lr=args.lr,
                       schedule='one_cycle', target_mean=mean,
                       target_std=std if std > 0 else 1.0)
        # Ten validations per model: with few training sets an epoch is a
        # step or two, and validating (and checkpointing) after each one
        # took most of the run's time.
        trainer = set_task.build_trainer(
            args, parser, monitor='val_mse', val_every=val_every,
            out=osp.join(args.out, f'n{n}'))
        set_task.fit(trainer, task,
                     set_task.data_module(args, parser, train, test), args)
        models[f"n{n}"] = task.model
        hparams[f'n{n}'] = dict(task.hparams)
        if trainer.is_global_zero:
            pred, _ = predict(task, test)
            rows.append({'num_train_sets': n,
                         'test_mse': float(F.mse_loss(pred, test.y))})
    if not rows:  # not rank 0
        return set_task.Outcome({}, models)

    baseline = float(test.y.var(unbiased=False))
    plug_in = plug_in_mse(test)
    results = {
        'experiment': 'population_statistics',
        'task': args.task,
        'dim': pool.dim,
        'steps_per_model': args.max_steps,
        'test_target_variance': baseline,
        'plug_in_mse': plug_in,
        'per_train_size': rows,
        'hparams': hparams,
    }
    print(f'\nPopulation statistics ({args.task}, dim {pool.dim}): test MSE '
          f'on {args.num_test} sets against the number of training sets '
          f'({args.max_steps} steps each). Predicting the mean scores '
          f'{baseline:.4g}; the sample-covariance plug-in estimate '
          f'{plug_in:.4g}.')
    print(format_table(['training sets', 'test MSE'],
                       [[r['num_train_sets'], r['test_mse']] for r in rows]))
    if not args.no_plot:
        results['plot'] = save_plot(
            osp.join(args.out, f'mse_vs_train_size_{args.task}.png'),
            lambda ax: _plot(ax, rows, args.task, baseline, plug_in))
    print(f'Results: {write_results(args.out, results)}')
    return set_task.Outcome(results, models)


def _plot(ax: Any, rows: List[dict], task: str, baseline: float,
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


if __name__ == '__main__':
    main()
