r"""Janossy pooling with pairs against Deep Sets on a task that needs
pairwise interactions (the claim of `"Janossy Pooling: Learning Deep
Permutation-Invariant Functions for Variable-Size Inputs"
<https://arxiv.org/abs/1811.01900>`_, Murphy et al., ICLR 2019): with
:math:`k = 2`, :math:`\phi` sees pairs of elements and learns the variance
far better than :math:`k = 1` (Deep Sets) with as many parameters.

Each set holds 2-10 numbers drawn uniformly from :math:`[0, 1)`; the target
is their unbiased variance, an average over pairs,
:math:`\frac{1}{n(n-1)}\sum_{i \neq j} (x_i - x_j)^2 / 2`. Every model is a
:class:`JanossyPooling` with :math:`\phi` = MLP(k, h, h) and :math:`\rho` =
MLP(h, h, 1) (mean over tuples), :math:`h = 32` for :math:`k = 2`; every
other model gets the smallest width with at least as many parameters as the
:math:`k = 2` one. ``--models`` can add :math:`k = 3`, and the default runs
:class:`JanossyPiSGD` too: a GRU over one sampled ordering per step (20 at
test time). The script reports the test MSE of each.

Usage::

    python examples/janossy_pairwise.py
    python examples/janossy_pairwise.py --models k1 k2 k3 pisgd
"""
import argparse
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import set_task
import torch
import torch.nn.functional as F
from report import format_table, write_results
from torch import nn

from torch_geometric_deepsets import JanossyPiSGD, JanossyPooling
from torch_geometric_deepsets.datasets import SetStatistics
from torch_geometric_deepsets.lightning import (
    SetTask,
    one_process_at_a_time,
    predict,
)

MODELS = ('k1', 'k2', 'k3', 'pisgd')


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(name: str, hidden: int) -> nn.Module:
    r"""The pairs model at width :obj:`hidden`; every other model at the
    smallest width that has at least as many parameters."""
    def make(width: int) -> nn.Module:
        if name == 'pisgd':
            return JanossyPiSGD(torch.nn.GRU(1, width), [width, width, 1])
        return JanossyPooling([1, width, width], [width, width, 1],
                              k=int(name[1:]))

    if name == 'k2':
        return make(hidden)
    budget = num_parameters(build_model('k2', hidden))
    width = 1
    while num_parameters(make(width)) < budget:
        width += 1
    return make(width)


def parse_args(argv: Optional[Sequence[str]]) -> tuple:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    set_task.add_arguments(parser, 'janossy_pairwise', max_steps=2000,
                           batch_size=64, lr=1e-3, threads=1)
    group = parser.add_argument_group('janossy_pairwise')
    group.add_argument('--models', nargs='+', choices=MODELS,
                       default=['k1', 'k2', 'pisgd'],
                       help='k1 (Deep Sets), k2, k3, pisgd (GRU over sampled '
                       'orderings) (default: k1 k2 pisgd)')
    group.add_argument('--hidden', type=set_task.positive_int, default=32,
                       help='width of phi and rho (default: 32)')
    group.add_argument('--num-train', type=set_task.positive_int,
                       default=8192, help='training sets (default: 8192)')
    group.add_argument('--num-test', type=set_task.positive_int,
                       default=2048, help='test sets (default: 2048)')
    group.add_argument('--data-seed', type=int, default=0,
                       help='seed of the generated sets (default: 0)')
    return parser, parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> set_task.Outcome:
    parser, args = parse_args(argv)
    root = osp.join(args.data_root, 'set_statistics')
    kwargs = dict(min_size=2, max_size=10, seed=args.data_seed)
    with one_process_at_a_time(root):
        train = SetStatistics(root, 'variance', 'train',
                              num_sets=args.num_train, **kwargs)
        test = SetStatistics(root, 'variance', 'test',
                             num_sets=args.num_test, **kwargs)
    mean, std = float(train.y.mean()), float(train.y.std())

    rows: List[Dict[str, Any]] = []
    models: Dict[str, nn.Module] = {}
    hparams: Dict[str, Dict[str, Any]] = {}
    for name in args.models:
        set_task.seed_everything(args)
        widths = dict(name=name, hidden=args.hidden)
        task = SetTask(build_model, widths, loss='mse', lr=args.lr,
                       schedule='one_cycle', target_mean=mean,
                       target_std=std)
        trainer = set_task.build_trainer(args, parser, monitor='val_mse',
                                         out=osp.join(args.out, name))
        set_task.fit(trainer, task,
                     set_task.data_module(args, parser, train, test), args)
        models[name] = model = task.model
        hparams[name] = dict(task.hparams)
        if trainer.is_global_zero:
            pred, _ = predict(task, test)
            rows.append({'model': name, 'parameters': num_parameters(model),
                         'test_mse': float(F.mse_loss(pred, test.y))})
    if not rows:  # not rank 0
        return set_task.Outcome({}, models)

    by_name = {r['model']: r['test_mse'] for r in rows}
    results = {
        'experiment': 'janossy_pairwise',
        'steps': args.max_steps,
        'test_target_variance': float(test.y.var(unbiased=False)),
        'rows': rows,
        'hparams': hparams,
    }
    if 'k1' in by_name and 'k2' in by_name:
        results['k1_over_k2_mse'] = by_name['k1'] / by_name['k2']
    print(f'\nVariance of sets of 2-10 numbers in [0, 1), {args.max_steps} '
          f'steps each; predicting the mean scores '
          f'{results["test_target_variance"]:.4g}:')
    print(format_table(['model', 'parameters', 'test MSE'],
                       [[r['model'], r['parameters'], r['test_mse']]
                        for r in rows]))
    if 'k1_over_k2_mse' in results:
        print(f'Test MSE, k = 1 / k = 2: {results["k1_over_k2_mse"]:.3g}x')
    print(f'Results: {write_results(args.out, results)}')
    return set_task.Outcome(results, models)


if __name__ == '__main__':
    main()
