r"""One rank of the 2-process streaming test (started by torchrun from
tests/integration/experiments/test_stream_distributed.py): each process
holds part of the rows of every set, streams them with
:obj:`distributed=True`, and saves its output and gradients for the test to
compare with one process holding every row."""
import os
import sys

import torch

from torch_geometric.nn.aggr import SoftmaxAggregation
from torch_geometric_deepsets import DeepSetsInvariant, stream_encode

NUM_SETS = 5
AGGRS = {
    'sum': lambda: 'sum',
    'mean': lambda: 'mean',
    'max': lambda: 'max',
    'min': lambda: 'min',
    'std': lambda: 'std',
    'softmax': lambda: SoftmaxAggregation(learn=True, channels=8),
}


def build(name):
    r"""The model, the rows and their set ids, the same in every process."""
    torch.manual_seed(7)
    aggr = AGGRS[name]()
    phi = [3, 16, 8] if name in ('sum', 'mean') else torch.nn.Sequential(
        torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8),
        torch.nn.ReLU())  # a ReLU last: tied maxima and minima
    model = DeepSetsInvariant(phi, [8, 2], aggr=aggr).double()
    x = torch.randn(60, 3, dtype=torch.float64)
    batch = torch.randint(0, NUM_SETS, (60, ))
    batch[batch == 3] = 4  # set 3 is empty
    target = torch.randn(NUM_SETS, 2, dtype=torch.float64)
    return model, x, batch, target


def rows_of(rank, batch, layout):
    r"""The rows a process holds: alternate rows, except that process 1
    holds no row of set 0 (:obj:`"uneven"`) or no row at all
    (:obj:`"idle"`)."""
    ids = torch.arange(batch.numel())
    if layout == 'idle':
        return ids if rank == 0 else ids[:0]
    mine = ids[ids % 2 == rank]
    if layout == 'uneven':
        keep = batch[mine] != 0 if rank == 1 else torch.ones_like(mine,
                                                                  dtype=bool)
        extra = ids[(batch == 0) & (ids % 2 == 1)] if rank == 0 else ids[:0]
        mine = torch.cat([mine[keep], extra])
    return mine


def main(out_dir):
    torch.distributed.init_process_group('gloo')
    rank = torch.distributed.get_rank()
    results = {}
    for layout in ('alternate', 'uneven', 'idle'):
        for name in AGGRS:
            model, x, batch, target = build(name)
            mine = rows_of(rank, batch, layout)
            chunks = [(x[part], batch[part]) for part in mine.split(7)]
            out = stream_encode(model, chunks, dim_size=NUM_SETS,
                                distributed=True)
            ((out - target)**2).sum().backward()
            results[layout, name] = (out.detach(), {
                key: p.grad for key, p in model.named_parameters()})
    torch.save(results, os.path.join(out_dir, f'rank{rank}.pt'))
    torch.distributed.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
