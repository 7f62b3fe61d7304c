r"""Set anomaly detection (Section 4.3 of the `"Deep Sets"
<https://arxiv.org/abs/1703.06114>`_ paper), with handwritten digits in
place of CelebA faces: in a set of 16 images, 15 show one digit and one
another; find the odd one.

As in the paper, an image encoder feeds permutation-equivariant layers
whose last layer gives every element one score, and a softmax over each set
turns the scores into the probability of being the odd one, trained with the
cross-entropy of the true odd element. The layers are the tied, max-pooled
form of eq. 23, :math:`\sigma((\mathbf{x}_i - \max_j \mathbf{x}_j)
\Lambda + \mathbf{b})` (the authors' :obj:`PermEqui1_max`): every element
is seen relative to the set, which is what an odd-one-out needs. Training
images get Gaussian pixel noise (:obj:`--noise`): the ~1,250 training images
are learnt perfectly either way, and the noise makes what carries over to
unseen images depend less on the seed.

This is the example of a task that is not "one output per set":
:class:`AnomalyTask` overrides :class:`SetTask`'s
:meth:`forward`, :meth:`loss` and :meth:`metrics`.

Usage::

    python examples/set_anomaly.py --seed 0
"""
import argparse
import os.path as osp
from typing import Any, Dict, Optional, Sequence

import set_task
import torch
from report import format_table, write_results
from torch import Tensor, nn

from torch_geometric.data import Batch
from torch_geometric.nn import MLP
from torch_geometric.utils import scatter
from torch_geometric_deepsets import DeepSetsEquivariant
from torch_geometric_deepsets.datasets import SetAnomaly
from torch_geometric_deepsets.lightning import (
    SetTask,
    one_process_at_a_time,
    predict,
)


class AnomalyScorer(nn.Module):
    r"""Image encoder (an MLP) followed by equivariant layers of widths
    :obj:`(256, 128, 1)` with tanh in between (the paper's head); returns
    one score per element.

    Args:
        in_channels (int): Pixels per image.
        hidden (int, optional): Width of the encoder. (default: :obj:`128`)
        aggr (str, optional): Pooling inside the equivariant layers.
            (default: :obj:`"max"`)
        tied (bool, optional): Tied layers (eq. 23) instead of eq. 22.
            (default: :obj:`True`)
    """
    def __init__(self, in_channels: int, hidden: int = 128,
                 aggr: str = 'max', tied: bool = True) -> None:
        super().__init__()
        self.encoder = MLP([in_channels, hidden, hidden], norm=None,
                           plain_last=False)
        self.equivariant = DeepSetsEquivariant([hidden, 256, 128, 1],
                                               aggr=aggr, tied=tied,
                                               act='tanh')

    def forward(self, x: Tensor, batch: Tensor, dim_size: int) -> Tensor:
        return self.equivariant(self.encoder(x), batch,
                                dim_size=dim_size).view(-1)


def set_log_softmax(scores: Tensor, batch: Tensor, dim_size: int) -> Tensor:
    r"""Log-softmax of :obj:`scores` within every set."""
    peak = scatter(scores.detach(), batch, dim_size=dim_size, reduce='max')
    shifted = scores - peak[batch]
    log_norm = scatter(shifted.exp(), batch, dim_size=dim_size,
                       reduce='sum').log()
    return shifted - log_norm[batch]


class AnomalyTask(SetTask):
    r"""One score per element; the loss is the cross-entropy of the odd
    element (:obj:`y == 1`) under a softmax over its set, the metric
    whether it scores highest."""
    def __init__(self, model: Any, model_kwargs: Optional[dict] = None,
                 noise: float = 0.0, **kwargs: Any) -> None:
        # A checkpoint's hyperparameters hold task='classification' too.
        kwargs['task'] = 'classification'
        super().__init__(model, model_kwargs, **kwargs)
        self.noise = noise

    def forward(self, batch: Batch) -> Tensor:
        x = batch.x
        if self.training and self.noise > 0:
            x = x + self.noise * torch.randn_like(x)
        return self.model(x, batch.batch, batch.num_graphs)

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        log_p = set_log_softmax(out, batch.batch, batch.num_graphs)
        return -log_p[batch.y == 1].mean()

    def metrics(self, out: Tensor, batch: Batch) -> Dict[str, Tensor]:
        peak = scatter(out, batch.batch, dim_size=batch.num_graphs,
                       reduce='max')
        odd = batch.y == 1
        return {'acc': (out[odd] >= peak[batch.batch[odd]]).float().mean()}


def parse_args(argv: Optional[Sequence[str]]) -> tuple:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    set_task.add_arguments(parser, 'set_anomaly', max_steps=6000,
                           batch_size=32, lr=1e-3, threads=1)
    group = parser.add_argument_group('set_anomaly')
    group.add_argument('--source', choices=['sklearn', 'mnist'],
                       default='sklearn', help='the digit images (default: '
                       'sklearn)')
    group.add_argument('--mnist-root', default=None,
                       help='local torchvision MNIST root, for --source '
                       'mnist (never downloaded)')
    group.add_argument('--data-seed', type=int, default=0,
                       help='seed of the generated sets (default: 0)')
    # More sets (new combinations of the same ~1,250 training images) fight
    # overfitting: 10k sets and 3k steps gave 83-94 % over three seeds.
    group.add_argument('--num-train', type=set_task.positive_int,
                       default=40_000, help='training sets (default: 40000)')
    group.add_argument('--num-test', type=set_task.positive_int,
                       default=2_000, help='test sets (default: 2000)')
    group.add_argument('--set-size', type=set_task.positive_int, default=16,
                       help='images per set (default: 16)')
    group.add_argument('--hidden', type=set_task.positive_int, default=128,
                       help='width of the image encoder (default: 128)')
    group.add_argument('--aggr', default='max',
                       help='pooling inside the equivariant layers '
                       '(default: max)')
    group.add_argument('--tied', action=argparse.BooleanOptionalAction,
                       default=True, help='tied layers, eq. 23 (default: '
                       '--tied)')
    group.add_argument('--noise', type=set_task.non_negative_float,
                       default=0.1, help='standard deviation of the Gaussian '
                       'noise added to training images (default: 0.1)')
    return parser, parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> set_task.Outcome:
    parser, args = parse_args(argv)
    set_task.seed_everything(args)
    root = osp.join(args.data_root, f'set_anomaly_{args.source}')
    kwargs = dict(set_size=args.set_size, seed=args.data_seed,
                  source=args.source, mnist_root=args.mnist_root)
    with one_process_at_a_time(root):
        train = SetAnomaly(root, 'train', num_sets=args.num_train, **kwargs)
        test = SetAnomaly(root, 'test', num_sets=args.num_test, **kwargs)

    widths = dict(in_channels=train.num_features, hidden=args.hidden,
                  aggr=args.aggr, tied=args.tied)
    task = AnomalyTask(AnomalyScorer, widths, noise=args.noise, lr=args.lr,
                       schedule='one_cycle')
    model = task.model
    # Five evaluations over the run, as in the results page (a run bounded
    # by --max-epochs instead validates after every epoch).
    trainer = set_task.build_trainer(
        args, parser, monitor='val_acc', mode='max',
        val_every=max(1, args.max_steps // 5) if args.max_steps > 0 else None)
    set_task.fit(trainer, task, set_task.data_module(args, parser, train,
                                                     test), args)
    if not trainer.is_global_zero:
        return set_task.Outcome({}, {'model': model})

    scores, batches = predict(task, test)
    hits, start = [], 0
    for batch in batches:
        out = scores[start:start + batch.num_nodes]
        hits.append(task.metrics(out, batch)['acc'] * batch.num_graphs)
        start += batch.num_nodes
    accuracy = float(sum(hits)) / len(test)
    evals = [{'step': h['step'], 'accuracy': h['val_acc']}
             for h in set_task.history(trainer) if 'val_acc' in h]
    results = {
        'experiment': 'set_anomaly',
        'seed': args.seed,
        'steps': trainer.global_step,
        'accuracy': accuracy,
        'chance': 1.0 / args.set_size,
        'evals': evals,
        'hparams': dict(task.hparams),
    }
    print(f'\nSet anomaly ({args.source} digits, sets of {args.set_size}): '
          f'trained {trainer.global_step} steps.')
    print(format_table(['step', 'test accuracy (%)'],
                       [[e['step'], 100 * e['accuracy']] for e in evals]))
    print(f'Final: {100 * accuracy:.2f} %; chance {100 / args.set_size:.2f} '
          f'%. Results: {write_results(args.out, results)}')
    return set_task.Outcome(results, {'model': model})


if __name__ == '__main__':
    main()
