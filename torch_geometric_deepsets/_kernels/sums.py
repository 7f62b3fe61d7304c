r"""Per-set sums that stay accurate for huge sets.

Both segment kernels add a set's rows one after the other, so the rounding
error grows with the set size: a plain float32 sum of a million values near
1000 drifts by 1 %. On the host path, sums over sets longer than
:data:`LONG_SET` rows are cut into chunks of :data:`CHUNK` rows whose
partial sums are added in float64."""
from typing import Optional

import torch
from torch import Tensor

from torch_geometric.typing import torch_scatter
from torch_geometric.utils import cumsum
from torch_geometric_deepsets._kernels import paths
from torch_geometric_deepsets._kernels.ids import (
    cpu_ids,
    offsets,
    pooled_shape,
    ptr_to_index,
    set_counts,
)

#: Rows summed in one sequential run before partial sums are combined.
CHUNK = 64
#: Sets longer than this are summed in chunks of :data:`CHUNK` rows on the
#: host path.
LONG_SET = 2048


def _segment_sum_raw(x: Tensor, ptr: Tensor) -> Tensor:
    if paths.use_torch_scatter():
        return torch_scatter.segment_csr(x, ptr, reduce='sum')
    return torch._segment_reduce(x, 'sum', offsets=ptr, initial=0)


def _chunked_sum(x: Tensor, ptr: Tensor) -> Tensor:
    r"""Per-set sums of the rows of the 2-D :obj:`x` (grouped by set, with
    boundaries :obj:`ptr`): every set is also cut at multiples of
    :data:`CHUNK` rows, the pieces are summed, and the partial sums are
    added in float64."""
    num_rows = x.size(0)
    grid = torch.arange(0, num_rows + 1, CHUNK, device=x.device,
                        dtype=ptr.dtype)
    bounds = torch.sort(torch.cat([ptr, grid])).values
    partial = _segment_sum_raw(x, bounds)
    outer = torch.searchsorted(bounds, ptr)
    outer[-1] = partial.size(0)
    return _segment_sum_raw(partial.double(), outer).to(x.dtype)


class _AccurateSum(torch.autograd.Function):
    r"""The chunked sum of long sets (host path only), with the backward
    pass of a plain sum."""
    @staticmethod
    def forward(ctx, x: Tensor, index: Optional[Tensor],
                ptr: Optional[Tensor], counts: Tensor, dim_size: int,
                dim: int) -> Tensor:
        ctx.save_for_backward(index, ptr)
        ctx.dim = dim
        ctx.num_rows = x.size(dim)
        rows = x.movedim(dim, 0)
        shape = rows.shape
        rows = rows.reshape(shape[0], -1)
        if ptr is None:
            ptr = cumsum(counts.long())
            if index.numel() > 1 and bool((index[1:] < index[:-1]).any()):
                rows = rows.index_select(0, torch.argsort(index,
                                                          stable=True))
        out = _chunked_sum(rows, ptr)
        return out.view((dim_size, ) + tuple(shape[1:])).movedim(0, dim)

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, ptr = ctx.saved_tensors
        if index is None:
            index = ptr_to_index(ptr, ctx.num_rows)
        return (grad.index_select(ctx.dim, index), None, None, None, None,
                None)


def _needs_chunks(x: Tensor, counts: Tensor) -> bool:
    return (x.dtype.is_floating_point and x.dtype != torch.float64
            and counts.numel() > 0 and int(counts.max()) > LONG_SET)


def segment_sum(x: Tensor, index: Optional[Tensor], ptr: Optional[Tensor],
                dim_size: int, dim: int = 0,
                counts: Optional[Tensor] = None) -> Tensor:
    r"""Per-set sum along :obj:`dim` (non-negative) of the rows of
    :obj:`x`; :obj:`index` is the set id of every row, :obj:`ptr` the
    boundaries of sorted sets (at least one of them given), :obj:`counts`
    the set sizes where the caller has them."""
    if paths.host_path(x) and x.size(dim) > LONG_SET:
        if counts is None:
            counts = set_counts(index, ptr, dim_size)
        if _needs_chunks(x, counts):
            return _AccurateSum.apply(x, index, ptr, counts, dim_size, dim)
    index = cpu_ids(index, ptr, x, dim)
    if index is None:
        return torch._segment_reduce(x, 'sum', offsets=offsets(ptr, x, dim),
                                     axis=dim, initial=0)
    out = x.new_zeros(pooled_shape(x, dim, dim_size))
    return out.index_add_(dim, index, x)
