r"""Digit sum, images (Section 4.1.1 of the `"Deep Sets"
<https://arxiv.org/abs/1703.06114>`_ paper): learn the sum of a set of
handwritten-digit images from sets of at most 10 images, with no label for
any single image, and test on sets of up to 50.

:math:`\phi` classifies an image softly into ten slots (an MLP and a
softmax), sum pooling counts the slots over the set, and :math:`\rho` is
linear, learning each slot's value; it is the text model with the
embedding lookup replaced by a learned, soft one. A set of :math:`N` images
is then summed exactly when every image lands in the right slot, so the
accuracy at size :math:`N` should follow :math:`p^N`, with :math:`p` the
same model's accuracy on single images, as the paper observes. The
exact-match accuracy sits a little above :math:`p^N` for large :math:`N`,
because errors can cancel in a sum (a 3 read as 8 and an 8 read as 3), so
the results also report the share of sets whose every image is read right
on its own, which is :math:`p^N` up to sampling noise (the test sets draw
their images uniformly from the pool on which :math:`p` is measured).

The slot values start spread uniformly over :math:`[0, 2\bar{v}]`, with
:math:`\bar{v}` the mean target per element of the training sets. From
equal values (PyTorch's default initialisation puts them all near 0)
every slot receives the same gradient and training stalls at predicting
the mean sum (measured: MAE 24 at size 50, per-digit accuracy 10 %).
"""
import argparse
import os.path as osp
from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import nn

from torch_geometric.data import Batch
from torch_geometric.nn import MLP
from torch_geometric.utils import scatter
from torch_geometric_deepsets.datasets import (
    DigitSumImages,
    load_digit_images,
)
from torch_geometric_deepsets.experiments._common import (
    Outcome,
    add_common_arguments,
    add_image_source_arguments,
    build_datasets,
    digit_sum_rows,
    final_evaluation,
    format_table,
    make_trainer,
    non_negative_float,
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

NAME = 'digit_sum_images'
HELP = ('sum of handwritten-digit images (sklearn 8x8 digits or local '
        'MNIST): train on sets of <= 10, test on sizes 5..50')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, NAME, steps=4000, batch_size=64, lr=3e-3,
                         threads=1)
    group = parser.add_argument_group(NAME)
    add_image_source_arguments(group)
    group.add_argument('--num-train', type=positive_int, default=20_000,
                       help='training sets (default: 20000)')
    group.add_argument('--train-max-size', type=positive_int, default=10,
                       help='training sets have 1..this many images '
                       '(default: 10)')
    group.add_argument('--test-sizes', type=positive_int, nargs='+',
                       default=list(range(5, 51, 5)),
                       help='test set sizes (default: 5 10 ... 50)')
    group.add_argument('--test-per-size', type=positive_int, default=1000,
                       help='test sets per size (default: 1000)')
    group.add_argument('--hidden', type=positive_int, default=512,
                       help='width of phi (default: 512)')
    group.add_argument('--dropout', type=non_negative_float, default=0.5,
                       help='dropout in phi (default: 0.5)')
    group.add_argument('--weight-decay', type=non_negative_float,
                       default=1e-2,
                       help='AdamW weight decay (default: 0.01)')


def build_model(in_channels: int, hidden: int = 512, dropout: float = 0.5,
                value_per_element: float = 4.5) -> DeepSetsInvariant:
    r"""MLP -> softmax over ten slots -> sum -> Dense(1), the slot values
    (the weights of the last layer) drawn from :math:`\mathcal{U}[0,
    2 \cdot \mathrm{value\_per\_element}]`."""
    phi = nn.Sequential(
        MLP([in_channels, hidden, hidden, 10], norm=None, dropout=dropout),
        nn.Softmax(dim=-1),
    )
    rho = nn.Linear(10, 1)
    with torch.no_grad():
        rho.weight.uniform_(0.0, 2.0 * value_per_element)
        rho.bias.zero_()
    return DeepSetsInvariant(phi=phi, rho=rho, aggr='sum')


def forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    return model(batch.x, batch.batch, dim_size=batch.num_graphs).view(-1)


def loss_fn(model: nn.Module, batch: Batch) -> torch.Tensor:
    return F.l1_loss(forward(model, batch), batch.y)


def read_right(model: nn.Module, batch: Batch) -> torch.Tensor:
    r"""Per element: whether the model, given the image as a set of one,
    predicts its digit."""
    alone = torch.arange(batch.num_nodes, device=batch.x.device)
    out = model(batch.x, alone, dim_size=batch.num_nodes).view(-1)
    return out.round() == batch.digit


def run(args: argparse.Namespace, ctx: DistributedContext) -> Outcome:
    root = osp.join(args.data_root, f'digit_sum_images_{args.source}')
    kwargs = dict(seed=args.data_seed, source=args.source,
                  mnist_root=args.mnist_root)
    train, test = build_datasets(ctx, lambda: (
        DigitSumImages(root, 'train', num_sets=args.num_train,
                       sizes=range(1, args.train_max_size + 1), **kwargs),
        DigitSumImages(root, 'test',
                       num_sets=args.test_per_size * len(args.test_sizes),
                       sizes=args.test_sizes, **kwargs),
    ))
    images, labels = load_digit_images('test', args.source, args.mnist_root)

    seed_everything(args.seed)
    value_per_element = float(train.y.sum()) / train.x.size(0)
    model = build_model(train.num_features, args.hidden, args.dropout,
                        value_per_element)

    def evaluate(model: nn.Module) -> Dict[str, Any]:
        # p: every test image as a set of one.
        single = model(images.to(ctx.device),
                       torch.arange(len(labels), device=ctx.device)).view(-1)
        p = float((single.cpu().round() == labels).float().mean())
        pred, batches = predict(model, test, ctx.device, forward)
        target = torch.cat([b.y for b in batches])
        sizes = torch.cat([b.ptr.diff() for b in batches])
        rows = digit_sum_rows(pred, target, sizes)
        right, _ = predict(model, test, ctx.device, read_right)
        owner = torch.repeat_interleave(torch.arange(sizes.numel()), sizes)
        all_right = scatter(right.float(), owner, dim_size=sizes.numel(),
                            reduce='min')
        for row in rows:
            row['p_to_the_n'] = p**row['size']
            row['all_digits_right'] = float(
                all_right[sizes == row['size']].mean())
        return {'per_digit_accuracy': p, 'per_size': rows}

    trainer = make_trainer(args, ctx, model, loss_fn, train, {
        'experiment': NAME,
        'source': args.source,
        'num_train': args.num_train,
        'train_max_size': args.train_max_size,
        'hidden': args.hidden,
        'dropout': args.dropout,
        'weight_decay': args.weight_decay,
    }, optimizer=lambda params: torch.optim.AdamW(
        params, lr=args.lr, weight_decay=args.weight_decay))
    summary = trainer.fit()

    results = None
    if ctx.is_main:
        ev = final_evaluation(model, evaluate)
        rows, p = ev['per_size'], ev['per_digit_accuracy']
        results = {
            **run_summary(trainer, summary),
            'per_digit_accuracy': p,
            'max_gap_to_p_to_the_n': max(
                abs(r['accuracy'] - r['p_to_the_n']) for r in rows),
            'max_gap_all_right_to_p_to_the_n': max(
                abs(r['all_digits_right'] - r['p_to_the_n']) for r in rows),
            'per_size': rows,
        }
        print(f'\nDigit sum (images, {args.source}): trained on sets of 1-'
              f'{args.train_max_size} images for {trainer.step} steps '
              f'({results["train_time_s"]} s). Per-digit accuracy p = '
              f'{100 * p:.2f} %; exact-match accuracy per set size:')
        print(
            format_table([
                'set size', 'accuracy (%)', 'p^N (%)',
                'all digits right (%)', 'MAE'
            ], [[
                r['size'], 100 * r['accuracy'], 100 * r['p_to_the_n'],
                100 * r['all_digits_right'], r['mae']
            ] for r in rows]))
        if not args.no_plot:
            results['plot'] = save_plot(
                osp.join(args.out, 'accuracy_vs_size.png'),
                lambda ax: _plot(ax, rows, p))
        print(f'Results: {write_results(args, results)}')
    results = ctx.broadcast_object(results)
    return Outcome(results, {'model': model})


def _plot(ax: Any, rows: list, p: float) -> None:
    sizes = [r['size'] for r in rows]
    ax.plot(sizes, [100 * r['accuracy'] for r in rows], 'o-',
            label='Deep Sets')
    ax.plot(sizes, [100 * r['all_digits_right'] for r in rows], 's:',
            color='tab:orange', label='every image read right')
    ax.plot(sizes, [100 * r['p_to_the_n'] for r in rows], 'k--',
            label=f'$p^N$, p = {100 * p:.1f} %')
    ax.set_xlabel('set size N')
    ax.set_ylabel('exact-match accuracy (%)')
    ax.set_ylim(0, 102)
    ax.set_title('Digit sum, images')
    ax.legend()
