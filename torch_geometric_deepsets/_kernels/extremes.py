r"""Max and min pooling with the gradient split evenly between tied extremes.

The forward pass gives PyG's values (0 for an empty set). The backward pass
gives a set's gradient to the rows that hold its extreme, split evenly
between ties, as :func:`torch.amax` and :meth:`Tensor.scatter_reduce` do,
in fewer operations than autograd's formula for
:meth:`Tensor.scatter_reduce`. On the host path it works through the rows
in cache-sized blocks (:func:`_backward_blocked`).

The tie rule has one home, :func:`hits` (which rows hold their set's
extreme), :func:`count_hits` and :func:`split_ties` (each tied row's
share); the streamed max and min
(:mod:`torch_geometric_deepsets.stream`) use them too.
"""
from typing import Optional

import torch
from torch import Tensor

from torch_geometric_deepsets._kernels import paths
from torch_geometric_deepsets._kernels.ids import (
    count_dtype,
    expanded,
    pooled_shape,
    set_counts,
)

#: Bytes of element rows the blocked backward handles at a time.
BLOCK_BYTES = 2**21

#: The :meth:`Tensor.scatter_reduce_` reduction of each extreme.
REDUCTIONS = {'max': 'amax', 'min': 'amin'}


def scatter_extreme(x: Tensor, index: Tensor, dim_size: int, dim: int = 0,
                    reduce: str = 'max', fill: float = 0.0) -> Tensor:
    r"""The per-set maximum (or minimum) of the rows of :obj:`x` along
    :obj:`dim`, :obj:`fill` for a set without rows (0, as in PyG; the
    streamed extremes start from :math:`\mp\infty`)."""
    out = x.new_full(pooled_shape(x, dim, dim_size), fill)
    return out.scatter_reduce_(dim, expanded(index, x, dim), x,
                               reduce=REDUCTIONS[reduce], include_self=False)


def hits(x: Tensor, extreme: Tensor, index: Tensor, dim: int = 0,
         dtype: Optional[torch.dtype] = None, out: Optional[Tensor] = None,
         gathered: Optional[Tensor] = None) -> Tensor:
    r"""1.0 where a row of :obj:`x` holds its set's :obj:`extreme` (one row
    per set), else 0.0, in :obj:`dtype` (by default one that counts rows
    exactly), or written to :obj:`out` (:obj:`gathered` then takes the
    gathered extremes: comparisons that write floats into a buffer are
    faster on the CPU than ones that write booleans)."""
    rows = torch.index_select(extreme, dim, index, out=gathered)
    if out is not None:
        return torch.eq(x, rows, out=out)
    return torch.eq(x, rows).to(dtype or count_dtype(x.dtype))


def count_hits(hit: Tensor, index: Tensor, dim_size: int,
               dim: int = 0) -> Tensor:
    r"""The number of tied extreme rows of every (set, feature) pair."""
    out = hit.new_zeros(pooled_shape(hit, dim, dim_size))
    return out.index_add_(dim, index, hit)


def split_ties(grad: Tensor, ties: Tensor,
               out: Optional[Tensor] = None) -> Tensor:
    r"""The share of a gradient each of :obj:`ties` tied extreme rows gets:
    :math:`g / \max(k, 1)` (a set without rows has no extreme row)."""
    return torch.div(grad, ties.clamp(min=1), out=out)


def _backward_whole(grad: Tensor, x: Tensor, index: Tensor, out: Tensor,
                    dim: int) -> Tensor:
    r"""The gradient in a few whole-tensor operations that never read a
    value back to the host."""
    hit = hits(x, out, index, dim)
    share = split_ties(grad, count_hits(hit, index, out.size(dim), dim))
    return hit.mul_(share.index_select(dim, index)).to(x.dtype)


def _backward_blocked(grad: Tensor, x: Tensor, index: Tensor,
                      out: Tensor) -> Tensor:
    r"""The gradient of 2-D :obj:`x` on the host path, over blocks of
    :data:`BLOCK_BYTES` of rows whose temporaries stay in cache, so that
    memory sees little more than one read of :obj:`x` and one write of the
    gradient.

    Ties are counted only when the extremes found outnumber the (set,
    feature) pairs, so data without ties costs one pass. Tied extremes are
    common after a ReLU (a feature that is zero on a whole set); they cost
    two more passes."""
    num_sets, channels = out.shape
    grad_x = torch.empty_like(x)
    step = max(BLOCK_BYTES // max(1, channels * x.element_size()), 1)
    blocks = list(zip(x.split(step), index.split(step), grad_x.split(step)))
    found = x.new_zeros((), dtype=torch.float64)
    rows_buf = grad.new_empty(min(step, x.size(0)), channels)
    for x_block, rows, grad_block in blocks:
        gathered = rows_buf[:rows.numel()]
        hits(x_block, out, rows, out=grad_block, gathered=gathered)
        found += grad_block.sum(dtype=torch.float32)
        grad_block.mul_(torch.index_select(grad, 0, rows, out=gathered))
    # Without NaN every (set, feature) pair of a non-empty set has at least
    # one extreme, so as many extremes as pairs means no ties. A NaN
    # extreme has none and could hide a tie elsewhere.
    counts = set_counts(index, None, num_sets)
    pairs = int((counts > 0).sum()) * channels
    if float(found) == float(pairs) and not bool(out.isnan().any()):
        return grad_x
    ties = x.new_zeros(num_sets, channels, dtype=count_dtype(x.dtype))
    buf = ties.new_empty(min(step, x.size(0)), channels)
    for x_block, rows, _ in blocks:
        ties.index_add_(0, rows, hits(x_block, out, rows,
                                      out=buf[:rows.numel()],
                                      gathered=rows_buf[:rows.numel()]))
    for _, rows, grad_block in blocks:
        split_ties(grad_block, ties.index_select(0, rows), out=grad_block)
    return grad_x


def extreme_backward(grad: Tensor, x: Tensor, index: Tensor, out: Tensor,
                     dim: int) -> Tensor:
    r"""The gradient of :func:`scatter_extreme` with respect to :obj:`x`,
    given its output :obj:`out`."""
    # The blocked form writes into buffers, which autograd cannot follow
    # when the backward pass is itself differentiated.
    if (paths.host_path(x) and x.dim() == 2 and dim == 0
            and not grad.requires_grad):
        return _backward_blocked(grad.contiguous(), x, index, out)
    return _backward_whole(grad, x, index, out, dim)


class SegmentExtreme(torch.autograd.Function):
    r""":func:`scatter_extreme` with :func:`extreme_backward`."""
    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, dim_size: int, dim: int,
                reduce: str) -> Tensor:
        out = scatter_extreme(x, index, dim_size, dim, reduce)
        ctx.save_for_backward(x, index, out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, index, out = ctx.saved_tensors
        return (extreme_backward(grad, x, index, out, ctx.dim), None, None,
                None, None)
