r"""What the streaming tests share: models with every streamable pooling,
random sets with empty ones, the whole-set and streamed training steps, the
chunkings of the rows, and the tolerance of "equal up to rounding"."""
import torch

from torch_geometric.nn.aggr import (
    PowerMeanAggregation,
    SoftmaxAggregation,
    StdAggregation,
    VarAggregation,
)
from torch_geometric_deepsets import (
    DeepSetsInvariant,
    stream_encode,
)

# (aggr, rho input width for phi's 8 output channels)
AGGRS = {
    'sum': ('sum', 8),
    'mean': ('mean', 8),
    'max': ('max', 8),
    'min': ('min', 8),
    'var': ('var', 8),
    'std': ('std', 8),
    'softmax': (lambda: SoftmaxAggregation(t=2.0), 8),
    'softmax_learn': (lambda: SoftmaxAggregation(learn=True, channels=8), 8),
    'softmax_semi': (lambda: SoftmaxAggregation(t=0.5, semi_grad=True), 8),
    'powermean': (lambda: PowerMeanAggregation(learn=True), 8),
    'var_semi': (lambda: VarAggregation(semi_grad=True), 8),
    'sum_max_std': (lambda: ['sum', 'max', StdAggregation()], 24),
}



#: Streamed against whole-set results: the same operations, summed in
#: another order (tighter than :data:`torch_geometric_deepsets.testing.
#: TOLERANCES`, whose float64 entry allows for other algorithms too).
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5),
       torch.float64: dict(rtol=1e-10, atol=1e-12)}



def make_model(name, dtype, phi=None):
    aggr, width = AGGRS[name]
    aggr = aggr() if callable(aggr) else aggr
    model = DeepSetsInvariant(phi or [3, 16, 8], [width, 16, 2], aggr=aggr)
    with torch.no_grad():  # learnable t and p away from their neutral 1
        for param in model.aggr_module.parameters():
            param.uniform_(0.5, 2.0)
    return model.to(dtype)



def make_sets(dtype, num_rows=40, num_sets=6):
    x = torch.randn(num_rows, 3, dtype=dtype)
    batch = torch.randint(0, num_sets, (num_rows, ))
    batch[batch == 2] = 3  # set 2 is empty
    return x, batch



def whole(model, x, batch, dim_size, target):
    model.zero_grad()
    out = model(x, batch, dim_size=dim_size)
    loss = ((out - target)**2).sum()
    loss.backward()
    return out.detach(), {n: p.grad.clone()
                          for n, p in model.named_parameters()}



def streamed(model, chunks, dim_size, target, **kwargs):
    model.zero_grad()
    out = stream_encode(model, chunks, dim_size=dim_size, **kwargs)
    loss = ((out - target)**2).sum()
    loss.backward()
    return out.detach(), {n: p.grad.clone()
                          for n, p in model.named_parameters()}



def chunkings(x, batch):
    r"""Chunks of one row; rows of many sets in random order and uneven
    chunks; each set spread over all chunks; one chunk without rows."""
    perm = torch.randperm(x.size(0))
    cuts = [0, 5, 6, 19, 33, x.size(0)]
    by_set = torch.argsort(batch, stable=True)
    spread = torch.cat([by_set[i::3] for i in range(3)])
    return {
        'single_rows': [(x[i:i + 1], batch[i:i + 1])
                        for i in range(x.size(0))],
        'shuffled': [(x[perm[a:b]], batch[perm[a:b]])
                     for a, b in zip(cuts[:-1], cuts[1:])],
        'spread': [(x[spread[i::4]], batch[spread[i::4]]) for i in range(4)],
        'with_empty_chunk': [(x[:0], batch[:0]), (x, batch)],
    }



def assert_close(a, b, dtype):
    torch.testing.assert_close(a, b, **TOL[dtype])
