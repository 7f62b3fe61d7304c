r"""Deep Sets as the global readout of a GNN.

A GIN encoder (:class:`torch_geometric.nn.models.GIN`) embeds the nodes of a
graph; the readout turns the node embeddings into one vector per graph. The
task is built so that the readout matters. Every graph has red, blue and
green nodes (one-hot colour plus a noise feature) on a cycle that ignores
the colours, and its label is

    1 if |#red - #blue| <= 1 ("balanced") else 0.

That needs global counts, which max pooling loses (it keeps the largest of
the node embeddings, each of which only sees a few neighbours on the cycle),
and a non-monotone function of the counts, which a linear layer after sum
pooling cannot compute. The Deep Sets readout
:math:`\rho(\sum_i \phi(\mathbf{h}_i))` does both. Three readouts on the
same encoder are compared:

* ``deepsets``: ``DeepSetsInvariant(phi=[H, H], rho=[H, H, 2])``;
* ``add``: ``global_add_pool`` then ``Linear(H, 2)``;
* ``max``: ``global_max_pool`` then ``Linear(H, 2)``.

(``global_add_pool`` followed by an MLP is a Deep Sets readout in all but
name: it is the nonlinear :math:`\rho` after the sum that makes the
difference here.) With the defaults (1000 training and 400 test graphs, 30
epochs, seed 0) we measured test accuracies of 0.99 (deepsets), 0.77 (add)
and 0.81 (max).

Usage::

    python examples/gnn_readout.py --threads 1     # ~20 s on one CPU core
    python examples/gnn_readout.py --epochs 10 --num-train 400 --json out.json
"""
import argparse
import json
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric.data import Batch, Data
from torch_geometric.nn import global_add_pool, global_max_pool
from torch_geometric.nn.models import GIN
from torch_geometric_deepsets import DeepSetsInvariant
from torch_geometric_deepsets.training import Trainer, seed_everything

READOUTS = ('deepsets', 'add', 'max')


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    return int(torch.randint(low, high + 1, (1, ), generator=generator))


def make_graph(generator: torch.Generator) -> Data:
    r"""One graph of the task: the label is drawn first, then colour counts
    that have it, so both classes are equally frequent."""
    label = _randint(0, 1, generator)
    red = _randint(0, 8, generator)
    if label == 1:
        blue = abs(red + _randint(-1, 1, generator))
    else:
        blue = red + _randint(2, 6, generator)
        if _randint(0, 1, generator) and red - (blue - red) >= 0:
            blue = red - (blue - red)
    green = _randint(2, 8, generator)
    num_nodes = red + blue + green
    color = torch.tensor([0] * red + [1] * blue + [2] * green)
    color = color[torch.randperm(num_nodes, generator=generator)]
    x = torch.cat([F.one_hot(color, 3).float(),
                   torch.randn(num_nodes, 1, generator=generator)], dim=-1)
    # A cycle through the (shuffled) nodes: connected, blind to the colours.
    ring = torch.arange(num_nodes)
    edge_index = torch.stack([ring, (ring + 1) % num_nodes])
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    return Data(x=x, edge_index=edge_index, y=torch.tensor([label]))


def make_dataset(num_graphs: int, seed: int) -> List[Data]:
    r"""A list of :obj:`num_graphs` graphs, the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    return [make_graph(generator) for _ in range(num_graphs)]


class GraphClassifier(torch.nn.Module):
    r"""A GIN encoder followed by one of the :data:`READOUTS`."""
    def __init__(self, in_channels: int, hidden_channels: int,
                 num_classes: int, readout: str = 'deepsets',
                 num_layers: int = 2) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"'readout' must be one of {READOUTS} "
                             f"(got {readout!r})")
        self.readout_name = readout
        self.encoder = GIN(in_channels, hidden_channels, num_layers)
        if readout == 'deepsets':
            self.readout = DeepSetsInvariant(
                phi=[hidden_channels, hidden_channels],
                rho=[hidden_channels, hidden_channels, num_classes])
        else:
            self.readout = torch.nn.Linear(hidden_channels, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor,
                num_graphs: Optional[int] = None) -> Tensor:
        h = self.encoder(x, edge_index)
        if self.readout_name == 'deepsets':
            return self.readout(h, batch, dim_size=num_graphs)
        pool = global_add_pool if self.readout_name == 'add' \
            else global_max_pool
        return self.readout(pool(h, batch, num_graphs))


def accuracy(model: torch.nn.Module, graphs: Sequence[Data]) -> float:
    batch = Batch.from_data_list(list(graphs))
    pred = model(batch.x, batch.edge_index, batch.batch,
                 batch.num_graphs).argmax(-1)
    return float((pred == batch.y).float().mean())


def loss_fn(model: torch.nn.Module, batch: Batch) -> Tensor:
    out = model(batch.x, batch.edge_index, batch.batch, batch.num_graphs)
    return F.cross_entropy(out, batch.y)


def compare(train: Sequence[Data], test: Sequence[Data],
            readouts: Sequence[str] = READOUTS, hidden_channels: int = 32,
            epochs: int = 30, batch_size: int = 64, lr: float = 3e-3,
            seed: int = 0, progress: bool = True) -> Dict[str, Dict]:
    r"""Trains one model per readout with the same encoder, data, seed and
    schedule. Returns, per readout, the per-epoch training losses and the
    final test accuracy."""
    steps_per_epoch = len(train) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"'train' holds {len(train)} graphs, fewer than "
                         f"one batch of {batch_size}")
    results = {}
    for readout in readouts:
        seed_everything(seed)
        model = GraphClassifier(train[0].num_features, hidden_channels,
                                num_classes=2, readout=readout)
        trainer = Trainer(model, loss_fn, train,
                          steps=epochs * steps_per_epoch,
                          batch_size=batch_size, lr=lr, seed=seed,
                          log_every=steps_per_epoch,
                          evaluate=lambda m: {'test_acc': accuracy(m, test)},
                          progress=progress, desc=readout)
        summary = trainer.fit()
        results[readout] = {
            'losses': [entry['loss'] for entry in trainer.history],
            'test_acc': summary['eval']['test_acc'],
        }
    return results


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-train', type=int, default=1000)
    parser.add_argument('--num-test', type=int, default=400)
    parser.add_argument('--epochs', type=int, default=30)
    parser.add_argument('--hidden', type=int, default=32)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--lr', type=float, default=3e-3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--readouts', nargs='+', default=list(READOUTS),
                        choices=READOUTS)
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads of torch (default: torch default)')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    if args.threads is not None:
        # Small graphs: on a busy CPU one thread is often the fastest.
        torch.set_num_threads(args.threads)

    train = make_dataset(args.num_train, seed=args.seed)
    test = make_dataset(args.num_test, seed=args.seed + 1)
    results = compare(train, test, args.readouts, args.hidden, args.epochs,
                      args.batch_size, args.lr, args.seed,
                      progress=not args.no_progress)

    print(f'{"readout":<10} {"first loss":>10} {"last loss":>10} '
          f'{"test acc":>9}')
    for name, res in results.items():
        print(f'{name:<10} {res["losses"][0]:>10.4f} '
              f'{res["losses"][-1]:>10.4f} {res["test_acc"]:>9.3f}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
