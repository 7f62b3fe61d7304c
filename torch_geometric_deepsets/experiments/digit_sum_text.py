r"""Digit sum, text (Section 4.1.1 of the `"Deep Sets"
<https://arxiv.org/abs/1703.06114>`_ paper): learn the sum of a set of digit
tokens from sets of at most 10 digits, test on sets of up to 100.

The model is the paper's: :math:`\phi` = embedding, Dense(30, tanh); sum
pooling; :math:`\rho` = Dense(1); L1 loss. Whatever :math:`\phi` learns, it
is a table of ten vectors, so the prediction is linear in the digit counts,
:math:`\hat{y} = b + \sum_d n_d v_d`, and generalises to any size once each
:math:`v_d` is within a fraction of :math:`0.5 / M` of :math:`d`.
"""
import argparse
import os.path as osp
from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import nn

from torch_geometric.data import Batch
from torch_geometric_deepsets.datasets import DigitSumText
from torch_geometric_deepsets.experiments._common import (
    Outcome,
    add_common_arguments,
    build_datasets,
    digit_sum_rows,
    final_evaluation,
    format_table,
    make_trainer,
    positive_int,
    predict,
    run_summary,
    save_plot,
    write_results,
)
from torch_geometric_deepsets.models import DeepSetsInvariant
from torch_geometric_deepsets.training import (
    DistributedContext,
    seed_everything,
)

NAME = 'digit_sum_text'
HELP = 'sum of digit tokens: train on sets of <= 10, test on sizes 5..100'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # One thread: a step touches ~700 rows, and splitting that across cores
    # costs more than it saves (2000 steps on 2 busy cores: 6 s with one
    # thread, 55 s with two).
    add_common_arguments(parser, NAME, steps=2000, batch_size=128, lr=1e-2,
                         threads=1)
    group = parser.add_argument_group(NAME)
    group.add_argument('--num-train', type=positive_int, default=100_000,
                       help='training sets (default: 100000)')
    group.add_argument('--train-max-size', type=positive_int, default=10,
                       help='training sets have 1..this many digits '
                       '(default: 10)')
    group.add_argument('--test-sizes', type=positive_int, nargs='+',
                       default=list(range(5, 101, 5)),
                       help='test set sizes (default: 5 10 ... 100)')
    group.add_argument('--test-per-size', type=positive_int, default=1000,
                       help='test sets per size (default: 1000)')
    group.add_argument('--embedding-dim', type=positive_int, default=100,
                       help='width of the digit embedding (default: 100)')
    group.add_argument('--hidden', type=positive_int, default=30,
                       help='width of phi (default: 30, as in the paper)')


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


def forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    return model(batch.x, batch.batch, dim_size=batch.num_graphs).view(-1)


def loss_fn(model: nn.Module, batch: Batch) -> torch.Tensor:
    return F.l1_loss(forward(model, batch), batch.y)


def run(args: argparse.Namespace, ctx: DistributedContext) -> Outcome:
    root = osp.join(args.data_root, 'digit_sum_text')
    train, test = build_datasets(ctx, lambda: (
        DigitSumText(root, 'train', num_sets=args.num_train,
                     sizes=range(1, args.train_max_size + 1),
                     seed=args.data_seed),
        DigitSumText(root, 'test',
                     num_sets=args.test_per_size * len(args.test_sizes),
                     sizes=args.test_sizes, seed=args.data_seed),
    ))

    seed_everything(args.seed)
    model = build_model(args.embedding_dim, args.hidden)

    def evaluate(model: nn.Module) -> Dict[str, Any]:
        pred, batches = predict(model, test, ctx.device, forward)
        target = torch.cat([b.y for b in batches])
        sizes = torch.cat([b.ptr.diff() for b in batches])
        return {'per_size': digit_sum_rows(pred, target, sizes)}

    trainer = make_trainer(args, ctx, model, loss_fn, train, {
        'experiment': NAME,
        'num_train': args.num_train,
        'train_max_size': args.train_max_size,
        'embedding_dim': args.embedding_dim,
        'hidden': args.hidden,
    })
    summary = trainer.fit()

    results = None
    if ctx.is_main:
        rows = final_evaluation(model, evaluate)['per_size']
        results = {
            **run_summary(trainer, summary),
            'min_accuracy': min(r['accuracy'] for r in rows),
            'per_size': rows,
        }
        print(f'\nDigit sum (text): trained on sets of 1-'
              f'{args.train_max_size} digits for {trainer.step} steps '
              f'({results["train_time_s"]} s); exact-match accuracy of the '
              f'rounded prediction and MAE on {args.test_per_size} test sets '
              f'per size:')
        print(format_table(['set size', 'accuracy (%)', 'MAE'],
                           [[r['size'], 100 * r['accuracy'], r['mae']]
                            for r in rows]))
        if not args.no_plot:
            results['plot'] = save_plot(
                osp.join(args.out, 'accuracy_vs_size.png'),
                lambda ax: _plot(ax, rows, args.train_max_size))
        print(f'Results: {write_results(args, results)}')
    results = ctx.broadcast_object(results)
    return Outcome(results, {'model': model})


def _plot(ax: Any, rows: list, train_max_size: int) -> None:
    ax.plot([r['size'] for r in rows], [100 * r['accuracy'] for r in rows],
            'o-', label='Deep Sets')
    ax.axvspan(0, train_max_size, color='grey', alpha=0.15,
               label='training sizes')
    ax.set_xlabel('set size')
    ax.set_ylabel('exact-match accuracy (%)')
    ax.set_ylim(0, 102)
    ax.set_title('Digit sum, text')
    ax.legend(loc='lower left')
