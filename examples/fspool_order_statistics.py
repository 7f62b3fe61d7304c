r"""FSPool against sum, mean and max pooling on order statistics (the claim
of `"FSPool: Learning Set Representations with Featurewise Sort Pooling"
<https://arxiv.org/abs/1906.02795>`_, Zhang et al., ICLR 2020): learned
weights over sorted values represent rank-based functions of a set that
plain pooling, at the same width, learns only roughly.

Each set holds 5-20 numbers drawn uniformly from :math:`[0, 1)`; the target
is their median or their second-largest value. Every pooling gets the same
:class:`DeepSetsInvariant`: :math:`\phi` = MLP(1, 32, 32), :math:`\rho` =
MLP(32, 32, 1), the same data order, optimiser and steps; FSPool adds its
:math:`32 \times 11` knots (10 pieces). The script reports the test MSE of
each.

Usage::

    python examples/fspool_order_statistics.py
    python examples/fspool_order_statistics.py --statistics median
"""
import argparse
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import set_task
import torch.nn.functional as F
from report import format_table, write_results
from torch import nn

from torch_geometric_deepsets import DeepSetsInvariant, FSPool
from torch_geometric_deepsets.datasets import SetStatistics
from torch_geometric_deepsets.lightning import (
    SetTask,
    one_process_at_a_time,
    predict,
)

POOLINGS = ('sum', 'mean', 'max', 'fspool')


def build_model(pooling: str, hidden: int, pieces: int) -> DeepSetsInvariant:
    aggr = FSPool(hidden, num_pieces=pieces) if pooling == 'fspool' \
        else pooling
    return DeepSetsInvariant(phi=[1, hidden, hidden],
                             rho=[hidden, hidden, 1], aggr=aggr)


def parse_args(argv: Optional[Sequence[str]]) -> tuple:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    set_task.add_arguments(parser, 'fspool_order_statistics', max_steps=2000,
                           batch_size=64, lr=1e-3, threads=1)
    group = parser.add_argument_group('fspool_order_statistics')
    group.add_argument('--statistics', nargs='+',
                       choices=['median', 'second_largest'],
                       default=['median', 'second_largest'],
                       help='targets (default: median second_largest)')
    group.add_argument('--poolings', nargs='+', choices=POOLINGS,
                       default=list(POOLINGS),
                       help='poolings to compare (default: all)')
    group.add_argument('--hidden', type=set_task.positive_int, default=32,
                       help='width of phi and rho (default: 32)')
    group.add_argument('--pieces', type=set_task.positive_int, default=10,
                       help="FSPool's linear pieces (default: 10)")
    group.add_argument('--num-train', type=set_task.positive_int,
                       default=8192, help='training sets (default: 8192)')
    group.add_argument('--num-test', type=set_task.positive_int,
                       default=2048, help='test sets (default: 2048)')
    group.add_argument('--data-seed', type=int, default=0,
                       help='seed of the generated sets (default: 0)')
    return parser, parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> set_task.Outcome:
    parser, args = parse_args(argv)
    rows: List[Dict[str, Any]] = []
    models: Dict[str, nn.Module] = {}
    hparams: Dict[str, Dict[str, Any]] = {}
    for statistic in args.statistics:
        root = osp.join(args.data_root, 'set_statistics')
        kwargs = dict(min_size=5, max_size=20, seed=args.data_seed)
        with one_process_at_a_time(root):
            train = SetStatistics(root, statistic, 'train',
                                  num_sets=args.num_train, **kwargs)
            test = SetStatistics(root, statistic, 'test',
                                 num_sets=args.num_test, **kwargs)
        mean, std = float(train.y.mean()), float(train.y.std())
        for pooling in args.poolings:
            name = f'{statistic}_{pooling}'
            set_task.seed_everything(args)
            widths = dict(pooling=pooling, hidden=args.hidden,
                          pieces=args.pieces)
            task = SetTask(build_model, widths, loss='mse',
                           lr=args.lr, schedule='one_cycle',
                           target_mean=mean, target_std=std)
            trainer = set_task.build_trainer(args, parser, monitor='val_mse',
                                             out=osp.join(args.out, name))
            set_task.fit(trainer, task,
                         set_task.data_module(args, parser, train, test),
                         args)
            models[name] = model = task.model
            hparams[name] = dict(task.hparams)
            if not trainer.is_global_zero:
                continue
            pred, _ = predict(task, test)
            rows.append({
                'statistic': statistic, 'pooling': pooling,
                'parameters': sum(p.numel() for p in model.parameters()),
                'test_mse': float(F.mse_loss(pred, test.y)),
                'test_target_variance': float(test.y.var(unbiased=False)),
            })
    if not rows:  # not rank 0
        return set_task.Outcome({}, models)

    gains = {}
    for statistic in args.statistics:
        mine = [r for r in rows if r['statistic'] == statistic]
        fspool = [r['test_mse'] for r in mine if r['pooling'] == 'fspool']
        others = [r['test_mse'] for r in mine if r['pooling'] != 'fspool']
        if fspool and others:
            gains[statistic] = min(others) / fspool[0]
    results = {
        'experiment': 'fspool_order_statistics',
        'steps': args.max_steps,
        'rows': rows,
        'best_plain_over_fspool_mse': gains,
        'hparams': hparams,
    }
    print(f'\nOrder statistics of sets of 5-20 numbers in [0, 1), '
          f'{args.max_steps} steps each, width {args.hidden}:')
    print(format_table(
        ['statistic', 'pooling', 'parameters', 'test MSE',
         'predicting the mean'],
        [[r['statistic'], r['pooling'], r['parameters'], r['test_mse'],
          r['test_target_variance']] for r in rows]))
    print('Best plain pooling / FSPool, test MSE: ' + ', '.join(
        f'{s}: {g:.3g}x' for s, g in gains.items()))
    print(f'Results: {write_results(args.out, results)}')
    return set_task.Outcome(results, models)


if __name__ == '__main__':
    main()
