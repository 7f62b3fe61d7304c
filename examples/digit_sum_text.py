r"""Digit sum, text (Section 4.1.1 of the `"Deep Sets"
<https://arxiv.org/abs/1703.06114>`_ paper): learn the sum of a set of digit
tokens from sets of at most 10 digits, test on sets of up to 100.

The model is the paper's: :math:`\phi` = embedding, Dense(30, tanh); sum
pooling; :math:`\rho` = Dense(1); L1 loss. Whatever :math:`\phi` learns, it
is a table of ten vectors, so the prediction is linear in the digit counts,
:math:`\hat{y} = b + \sum_d n_d v_d`, and generalises to any size once each
:math:`v_d` is within a fraction of :math:`0.5 / M` of :math:`d`.

Usage (``make demo`` runs the first line)::

    python examples/digit_sum_text.py
    python examples/digit_sum_text.py --help
"""
import argparse
import os.path as osp
from typing import Any, List, Optional, Sequence

import set_task
import torch
from report import digit_sum_rows, format_table, save_plot, write_results
from torch import nn

from torch_geometric_deepsets import DeepSetsInvariant
from torch_geometric_deepsets.datasets import DigitSumText
from torch_geometric_deepsets.lightning import (
    SetTask,
    one_process_at_a_time,
    predict,
)


def build_model(embedding_dim: int = 100, hidden: int = 30,
                ) -> DeepSetsInvariant:
    r"""Embedding -> Dense(hidden, tanh) -> sum -> Dense(1)."""
    phi = nn.Sequential(
        nn.Embedding(10, embedding_dim),
        nn.Flatten(1),  # x holds one token per row: [N, 1] -> [N, dim]
        nn.Linear(embedding_dim, hidden),
        nn.Tanh(),
    )
    return DeepSetsInvariant(phi=phi, rho=nn.Linear(hidden, 1), aggr='sum')


def parse_args(argv: Optional[Sequence[str]]) -> tuple:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    # One thread: a step touches ~700 rows, and splitting that across cores
    # costs more than it saves on busy cores.
    set_task.add_arguments(parser, 'digit_sum_text', max_steps=2000,
                           batch_size=128, lr=1e-2, threads=1)
    group = parser.add_argument_group('digit_sum_text')
    group.add_argument('--data-seed', type=int, default=0,
                       help='seed of the generated sets (default: 0)')
    group.add_argument('--num-train', type=set_task.positive_int,
                       default=100_000, help='training sets (default: 100000)')
    group.add_argument('--train-max-size', type=set_task.positive_int,
                       default=10, help='training sets have 1..this many '
                       'digits (default: 10)')
    group.add_argument('--test-sizes', type=set_task.positive_int, nargs='+',
                       default=list(range(5, 101, 5)),
                       help='test set sizes (default: 5 10 ... 100)')
    group.add_argument('--test-per-size', type=set_task.positive_int,
                       default=1000, help='test sets per size (default: 1000)')
    group.add_argument('--embedding-dim', type=set_task.positive_int,
                       default=100, help='width of the digit embedding '
                       '(default: 100)')
    group.add_argument('--hidden', type=set_task.positive_int, default=30,
                       help='width of phi (default: 30, as in the paper)')
    return parser, parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> set_task.Outcome:
    parser, args = parse_args(argv)
    set_task.seed_everything(args)
    root = osp.join(args.data_root, 'digit_sum_text')
    with one_process_at_a_time(root):
        train = DigitSumText(root, 'train', num_sets=args.num_train,
                             sizes=range(1, args.train_max_size + 1),
                             seed=args.data_seed)
        test = DigitSumText(root, 'test',
                            num_sets=args.test_per_size * len(args.test_sizes),
                            sizes=args.test_sizes, seed=args.data_seed)

    data = set_task.data_module(args, parser, train, test)
    task = SetTask(build_model, {'embedding_dim': args.embedding_dim,
                                 'hidden': args.hidden},
                   loss='l1', lr=args.lr, schedule='one_cycle')
    trainer = set_task.build_trainer(args, parser, monitor='val_mae')
    set_task.fit(trainer, task, data, args)
    if not trainer.is_global_zero:
        return set_task.Outcome({}, {'model': task.model})

    pred, batches = predict(task, test)
    target = torch.cat([b.y for b in batches])
    sizes = torch.cat([b.ptr.diff() for b in batches])
    rows = digit_sum_rows(pred, target, sizes)
    results = {
        'experiment': 'digit_sum_text',
        'steps': trainer.global_step,
        'min_accuracy': min(r['accuracy'] for r in rows),
        'per_size': rows,
        'history': set_task.history(trainer),
        'hparams': dict(task.hparams),
    }
    print(f'\nDigit sum (text): trained on sets of 1-{args.train_max_size} '
          f'digits for {trainer.global_step} steps; exact-match accuracy of '
          f'the rounded prediction and MAE on {args.test_per_size} test sets '
          f'per size:')
    print(format_table(['set size', 'accuracy (%)', 'MAE'],
                       [[r['size'], 100 * r['accuracy'], r['mae']]
                        for r in rows]))
    if not args.no_plot:
        results['plot'] = save_plot(
            osp.join(args.out, 'accuracy_vs_size.png'),
            lambda ax: _plot(ax, rows, args.train_max_size))
    print(f'Results: {write_results(args.out, results)}')
    return set_task.Outcome(results, {'model': task.model})


def _plot(ax: Any, rows: List[dict], train_max_size: int) -> None:
    ax.plot([r['size'] for r in rows], [100 * r['accuracy'] for r in rows],
            'o-', label='Deep Sets')
    ax.axvspan(0, train_max_size, color='grey', alpha=0.15,
               label='training sizes')
    ax.set_xlabel('set size')
    ax.set_ylabel('exact-match accuracy (%)')
    ax.set_ylim(0, 102)
    ax.set_title('Digit sum, text')
    ax.legend(loc='lower left')


if __name__ == '__main__':
    main()
