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

Every model trains through :class:`SetTask` (a subclass whose
:meth:`forward` passes ``edge_index``), so the options of all examples
apply (``--precision``, ``--devices``, ...).

Usage::

    python examples/gnn_readout.py                  # ~1 min on one CPU core
    python examples/gnn_readout.py --max-epochs 10 --json out.json
"""
import argparse
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

import set_task
import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric.data import Batch, Data
from torch_geometric.nn import global_add_pool, global_max_pool
from torch_geometric.nn.models import GIN
from torch_geometric_deepsets import DeepSetsInvariant
from torch_geometric_deepsets.lightning import SetTask

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


class GraphTask(SetTask):
    r"""A :class:`SetTask` whose model also takes the edges."""
    def forward(self, batch: Batch) -> Tensor:
        return self.model(batch.x, batch.edge_index, batch.batch,
                          batch.num_graphs)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    set_task.add_arguments(parser, 'gnn_readout', max_epochs=30,
                           batch_size=64, lr=3e-3)
    group = parser.add_argument_group('gnn_readout')
    group.add_argument('--num-train', type=set_task.positive_int,
                       default=1000, help='training graphs (default: 1000)')
    group.add_argument('--num-test', type=set_task.positive_int,
                       default=400, help='test graphs (default: 400)')
    group.add_argument('--hidden', type=set_task.positive_int, default=32,
                       help='width (default: 32)')
    group.add_argument('--readouts', nargs='+', default=list(READOUTS),
                       choices=READOUTS)
    group.add_argument('--json', help='also write the results here')
    args = parser.parse_args(argv)

    train = make_dataset(args.num_train, seed=args.seed)
    test = make_dataset(args.num_test, seed=args.seed + 1)
    # One model per readout: the same encoder, data, seed and schedule.
    results: Dict[str, Dict] = {}
    for readout in args.readouts:
        set_task.seed_everything(args)
        widths = dict(in_channels=train[0].num_features,
                      hidden_channels=args.hidden, num_classes=2,
                      readout=readout)
        task = GraphTask(GraphClassifier, widths, task='classification',
                         lr=args.lr)
        trainer = set_task.build_trainer(
            args, parser, monitor='val_acc', mode='max',
            out=osp.join(args.out, readout))
        set_task.fit(trainer, task,
                     set_task.data_module(args, parser, train, test), args)
        history = set_task.history(trainer)
        results[readout] = {
            'losses': [h['train_loss_epoch'] for h in history
                       if 'train_loss_epoch' in h],
            'test_acc': history[-1]['val_acc'],
            'hparams': dict(task.hparams),
        }
    if not trainer.is_global_zero:
        return results

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
