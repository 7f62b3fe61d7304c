r"""DeepSets++ against the plain equivariant stack as depth grows (the central
claim of `"Set Norm and Equivariant Skip Connections: Putting the Deep in
Deep Sets" <https://arxiv.org/abs/2206.11925>`_, Zhang et al., ICML 2022):
deep permutation-equivariant stacks stop training, while clean-path residual
blocks with set norm keep training at 50 layers.

The task is population statistics (the entropy of a rotated 2-D Gaussian's
first coordinate from a sample of 20-50 of its points). For every depth
:math:`L`, the plain model is :class:`DeepSetsEquivariant` with :math:`L`
equivariant layers of width 32 and mean pooling, read out by the mean; the
DeepSets++ model has :math:`\max(1, \lfloor (L - 1)/2 \rfloor)` residual
blocks of the same layers (:math:`2` per block plus an input and an output
layer: 4, 10, 26 and 50 layers for :math:`L` = 3, 10, 25, 50). Both train
with the same data order, optimiser and number of steps; the script reports
the training loss (MSE of the standardised target, averaged over the last
50 steps), the test MSE, and plots the training-loss curves.

Usage::

    python examples/deepsets_pp_depth.py
    python examples/deepsets_pp_depth.py --depths 3 50 --max-steps 800
"""
import argparse
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import set_task
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from report import format_table, save_plot, write_results
from torch import nn

from torch_geometric_deepsets import DeepSetsEquivariant, DeepSetsPlusPlus
from torch_geometric_deepsets.datasets import PopulationStatistics
from torch_geometric_deepsets.lightning import (
    SetTask,
    one_process_at_a_time,
    predict,
)

MODELS = ('plain', 'deepsets++')


def build_model(kind: str, depth: int, hidden: int) -> nn.Module:
    r"""The plain stack of :obj:`depth` equivariant layers, or DeepSets++
    with about as many (see the module docstring)."""
    if kind == 'plain':
        return DeepSetsEquivariant([2] + [hidden] * (depth - 1) + [1],
                                   aggr='mean', readout='mean')
    return DeepSetsPlusPlus(2, hidden, 1, num_blocks=max(1, (depth - 1) // 2),
                            aggr='mean', readout='mean')


def num_layers(model: nn.Module) -> int:
    return sum(type(m).__name__ == 'PermutationEquivariantLayer'
               for m in model.modules())


class LossCurve(Callback):
    r"""The training loss of every step."""
    def __init__(self) -> None:
        self.losses: List[float] = []

    def on_train_batch_end(self, trainer: Any, task: Any, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self.losses.append(float(outputs['loss']))


def parse_args(argv: Optional[Sequence[str]]) -> tuple:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    set_task.add_arguments(parser, 'deepsets_pp_depth', max_steps=400,
                           batch_size=64, lr=1e-3, threads=1)
    group = parser.add_argument_group('deepsets_pp_depth')
    group.add_argument('--depths', type=set_task.positive_int, nargs='+',
                       default=[3, 10, 25, 50],
                       help='equivariant layers of the plain stack '
                       '(default: 3 10 25 50)')
    group.add_argument('--hidden', type=set_task.positive_int, default=32,
                       help='width of every layer (default: 32)')
    group.add_argument('--num-train', type=set_task.positive_int,
                       default=2048, help='training sets (default: 2048)')
    group.add_argument('--num-test', type=set_task.positive_int, default=512,
                       help='test sets (default: 512)')
    group.add_argument('--data-seed', type=int, default=0,
                       help='seed of the generated sets (default: 0)')
    return parser, parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> set_task.Outcome:
    parser, args = parse_args(argv)
    root = osp.join(args.data_root, 'population_statistics')
    kwargs = dict(task='rotation', min_size=20, max_size=50,
                  seed=args.data_seed)
    with one_process_at_a_time(root):
        train = PopulationStatistics(root, split='train',
                                     num_sets=args.num_train, **kwargs)
        test = PopulationStatistics(root, split='test',
                                    num_sets=args.num_test, **kwargs)
    mean, std = float(train.y.mean()), float(train.y.std())

    rows: List[Dict[str, Any]] = []
    curves: Dict[str, List[float]] = {}
    models: Dict[str, nn.Module] = {}
    hparams: Dict[str, Dict[str, Any]] = {}
    for depth in args.depths:
        for kind in MODELS:
            name = f'{kind}_{depth}'
            set_task.seed_everything(args)  # same init stream, data order
            widths = dict(kind=kind, depth=depth, hidden=args.hidden)
            task = SetTask(build_model, widths, loss='mse',
                           lr=args.lr, target_mean=mean,
                           target_std=std)
            curve = LossCurve()
            trainer = set_task.build_trainer(args, parser,
                                             out=osp.join(args.out, name))
            trainer.callbacks.append(curve)
            set_task.fit(trainer, task,
                         set_task.data_module(args, parser, train, test),
                         args)
            models[name] = model = task.model
            hparams[name] = dict(task.hparams)
            if not trainer.is_global_zero:
                continue
            pred, _ = predict(task, test)
            tail = curve.losses[-50:]
            curves[name] = curve.losses
            rows.append({
                'model': kind, 'depth': depth, 'layers': num_layers(model),
                'first_loss': curve.losses[0],
                'final_train_loss': sum(tail) / len(tail),
                'test_mse': float(F.mse_loss(pred, test.y)),
            })
    if not rows:  # not rank 0
        return set_task.Outcome({}, models)

    ratios = {}
    for depth in args.depths:
        plain, plus = (next(r for r in rows if r['model'] == kind
                            and r['depth'] == depth) for kind in MODELS)
        ratios[str(depth)] = plain['final_train_loss'] / \
            plus['final_train_loss']
    results = {
        'experiment': 'deepsets_pp_depth',
        'steps': args.max_steps,
        'test_target_variance': float(test.y.var(unbiased=False)),
        'rows': rows,
        'plain_over_deepsets_pp_train_loss': ratios,
        'curves': curves,
        'hparams': hparams,
    }
    print(f'\nPlain equivariant stack against DeepSets++, {args.max_steps} '
          f'steps each (training loss: MSE of the standardised target, '
          f'mean of the last 50 steps; predicting the mean scores 1):')
    print(format_table(
        ['model', 'depth', 'equivariant layers', 'final training loss',
         'test MSE'],
        [[r['model'], r['depth'], r['layers'], r['final_train_loss'],
          r['test_mse']] for r in rows]))
    print('Training loss, plain / DeepSets++: ' + ', '.join(
        f'depth {d}: {v:.3g}x' for d, v in ratios.items()))
    if not args.no_plot:
        results['plot'] = save_plot(
            osp.join(args.out, 'loss_curves.png'),
            lambda ax: _plot(ax, curves, args.depths))
    print(f'Results: {write_results(args.out, results)}')
    return set_task.Outcome(results, models)


def _smooth(values: List[float], width: int = 20) -> List[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= width:
            total -= values[i - width]
        out.append(total / min(i + 1, width))
    return out


def _plot(ax: Any, curves: Dict[str, List[float]],
          depths: Sequence[int]) -> None:
    colours = ['tab:blue', 'tab:orange', 'tab:green', 'tab:red', 'tab:purple']
    for i, depth in enumerate(depths):
        for kind, style in zip(MODELS, ('--', '-')):
            loss = _smooth(curves[f'{kind}_{depth}'])
            ax.plot(range(1, len(loss) + 1), loss, style,
                    color=colours[i % len(colours)],
                    label=f'{kind}, depth {depth}')
    ax.set_yscale('log')
    ax.set_xlabel('step')
    ax.set_ylabel('training loss (MSE, standardised)')
    ax.set_title('Plain stack (dashed) vs DeepSets++ (solid)')
    ax.legend(fontsize=6, ncol=2)


if __name__ == '__main__':
    main()
