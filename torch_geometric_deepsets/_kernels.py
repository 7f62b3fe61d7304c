r"""Sum, mean and max pooling with their own backward passes, used for
PyG's :class:`SumAggregation`, :class:`MeanAggregation` and
:class:`MaxAggregation` by every layer and model of the package.

What they add over PyG's :meth:`Aggregation.reduce` (measured on an idle
2-core CPU, 65k rows x 128, see ``benchmarks/``):

* the max backward splits the gradient evenly between tied maxima, like
  :func:`torch.amax`, so :func:`torch.autograd.gradcheck` holds at ties.
  It works through the rows in cache-sized blocks with floating-point
  masks (see :func:`max_backward`): max pooling forward + backward took
  6.9-9.1 ms against 35-47 ms for PyG's scatter (whose
  :meth:`Tensor.scatter_reduce_` backward dominates) and 13.9-14.7 ms for
  the same formula on whole tensors with boolean masks;
* sets longer than :data:`LONG_SET` rows are summed in chunks combined in
  float64: a plain float32 sum of a million values near 1000 drifted by 1 %;
* sums of ordinary sets use :meth:`Tensor.index_add_`, as fast as PyG's
  scatter (both ~5x faster than a segment kernel, which runs on one thread);
* broadcasting set rows back to elements (:func:`gather_sets`) has a
  segment-sum backward instead of a second scatter.

:mod:`torch_scatter`'s :func:`segment_csr` replaces
:func:`torch._segment_reduce` in the chunked sums where it is installed
(~2x faster); results are identical.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

import torch_geometric.typing
from torch_geometric.typing import torch_scatter

REDUCTIONS = ('sum', 'mean', 'max')


def _rows(src: Tensor, index: Tensor) -> Tensor:
    r""":obj:`src[index]` along the first dimension."""
    return src.index_select(0, index)


def set_counts(index: Tensor, ptr: Optional[Tensor],
               dim_size: int) -> Tensor:
    r"""Number of rows of each set, shape :math:`[B]`, from :obj:`ptr` where
    given, else from the set id of every row."""
    if ptr is not None:
        return ptr[1:] - ptr[:-1]
    return torch.bincount(index, minlength=dim_size)


def use_torch_scatter() -> bool:
    r"""Whether the optional :mod:`torch_scatter` backend is used."""
    return bool(torch_geometric.typing.WITH_TORCH_SCATTER)


#: Rows summed in one sequential run before partial sums are combined.
CHUNK = 64
#: Sets longer than this are summed in chunks of :data:`CHUNK` rows.
LONG_SET = 2048


def _segment_sum_raw(x: Tensor, ptr: Tensor) -> Tensor:
    if use_torch_scatter():
        return torch_scatter.segment_csr(x, ptr, reduce='sum')
    return torch._segment_reduce(x, 'sum', offsets=ptr, initial=0)


def _segment_sum(x: Tensor, ptr: Tensor) -> Tensor:
    r"""Segment sum that stays accurate for huge sets.

    Both segment kernels add a segment's rows one after the other, so the
    rounding error grows with the set size: the float32 mean of a million
    values around 1000 measured 0.9 % off. Here every segment is first cut
    at multiples of :data:`CHUNK` rows, the pieces are summed, and the
    partial sums are added in float64. The cut points come from a sort of
    :obj:`ptr` and a fixed grid, so no size is read back from the device.
    """
    num_rows = x.size(0)
    if x.dtype == torch.float64 or num_rows <= 2 * CHUNK \
            or not x.dtype.is_floating_point:
        return _segment_sum_raw(x, ptr)
    grid = torch.arange(0, num_rows + 1, CHUNK, device=x.device,
                        dtype=ptr.dtype)
    bounds = torch.sort(torch.cat([ptr, grid])).values
    partial = _segment_sum_raw(x, bounds)
    outer = torch.searchsorted(bounds, ptr)
    outer[-1] = partial.size(0)
    return _segment_sum_raw(partial.double(), outer).to(x.dtype)


def _sorted_view(x: Tensor, index: Tensor, ptr: Optional[Tensor],
                 dim_size: int) -> Tuple[Tensor, Optional[Tensor]]:
    r"""Rows of :obj:`x` grouped by set, and :obj:`ptr`, when that is cheap
    (CPU, or :obj:`ptr` given); :obj:`(x, None)` otherwise."""
    if ptr is not None:
        return x, ptr
    on_cpu = x.device.type == 'cpu'
    if not on_cpu and not torch.are_deterministic_algorithms_enabled():
        return x, None  # GPU atomics scatter fast; a sortedness check syncs
    counts = set_counts(index, None, dim_size)
    ptr = torch.zeros(dim_size + 1, dtype=torch.long, device=x.device)
    torch.cumsum(counts, 0, out=ptr[1:])
    # On the CPU, sort only when needed; on a GPU in deterministic mode,
    # always (asking whether rows are sorted would sync the device).
    if not on_cpu or (index.numel() > 1
                      and bool((index[1:] < index[:-1]).any())):
        x = x.index_select(0, torch.argsort(index, stable=True))
    return x, ptr


def _needs_chunks(x: Tensor, index: Tensor, ptr: Optional[Tensor],
                  dim_size: int) -> bool:
    r"""Whether a set may be long enough for sequential float rounding to
    matter (more than :data:`LONG_SET` rows)."""
    if x.dtype == torch.float64 or x.size(0) <= LONG_SET:
        return False
    if x.device.type != 'cpu':
        # Reading the largest set size would sync the device: chunk whenever
        # ptr makes it cheap, and leave atomics to index-only input.
        return ptr is not None
    counts = set_counts(index, ptr, dim_size)
    return counts.numel() > 0 and int(counts.max()) > LONG_SET


def segment_sum(x: Tensor, index: Tensor, ptr: Optional[Tensor],
                dim_size: int, exact: bool = False) -> Tensor:
    r"""Per-set sum of the rows of :obj:`x` (no autograd).

    Sets of up to :data:`LONG_SET` rows are summed by
    :meth:`Tensor.index_add_` (parallel, measured 5x faster than either
    segment kernel on an idle 2-core CPU); longer sets take the chunked,
    float64-combined path of :func:`_segment_sum`. :obj:`exact` marks
    small-integer values (counts), whose sums are exact in any order.
    """
    deterministic_gpu = (x.device.type != 'cpu'
                         and torch.are_deterministic_algorithms_enabled())
    if deterministic_gpu or (not exact
                             and _needs_chunks(x, index, ptr, dim_size)):
        rows, rows_ptr = _sorted_view(x, index, ptr, dim_size)
        if rows_ptr is not None:
            if exact:
                return _segment_sum_raw(rows, rows_ptr)
            return _segment_sum(rows, rows_ptr)
    out = x.new_zeros(dim_size, x.size(1))
    return out.index_add_(0, index, x)


def segment_max(x: Tensor, index: Tensor, dim_size: int) -> Tensor:
    r"""Per-set maximum (0 for empty sets; no autograd). A scatter with
    :obj:`include_self=False` measured as fast as a copy of :obj:`x` on the
    CPU (1.3 ms against 1.6 ms at 65k x 128, 2 threads)."""
    out = x.new_zeros(dim_size, x.size(1))
    return out.scatter_reduce_(0, index.view(-1, 1).expand_as(x), x,
                               reduce='amax', include_self=False)


def _count(x: Tensor, index: Tensor, ptr: Optional[Tensor],
           dim_size: int) -> Tensor:
    counts = set_counts(index, ptr, dim_size)
    return counts.to(x.dtype).clamp_(min=1).unsqueeze(-1)


#: Bytes of element rows the CPU max backward handles at a time.
BLOCK_BYTES = 2**21


def _is_max(x: Tensor, out: Tensor, index: Tensor, buf: Tensor,
            rows_buf: Optional[Tensor] = None) -> Tensor:
    r"""1.0 where a row of :obj:`x` holds its set's maximum, else 0.0,
    written to :obj:`buf` (:obj:`rows_buf` takes the gathered maxima). A
    floating-point result: comparisons that write booleans measured 4x
    slower on the CPU."""
    if rows_buf is None:
        maxima = out.index_select(0, index)
    else:
        maxima = torch.index_select(out, 0, index, out=rows_buf)
    return torch.eq(x, maxima, out=buf)


def _count_dtype(dtype: torch.dtype) -> torch.dtype:
    r"""A dtype that counts tied rows exactly (half precision stops being
    exact at 257 (bfloat16) or 2049 (float16) rows)."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def max_backward(grad: Tensor, x: Tensor, index: Tensor,
                 ptr: Optional[Tensor], out: Tensor) -> Tensor:
    r"""Gradient of the per-set maximum :obj:`out` with respect to :obj:`x`:
    :obj:`grad` of a set goes to the rows holding the maximum, split evenly
    between tied rows as :func:`torch.amax` does.

    On the CPU, :func:`_max_backward_blocked`; elsewhere, where kernel
    launches rather than memory traffic set the time, and whenever the
    backward pass itself is differentiated (:obj:`create_graph=True`: the
    blocked form writes into buffers, which autograd cannot follow),
    :func:`_max_backward_whole`."""
    if x.device.type == 'cpu' and not grad.requires_grad:
        return _max_backward_blocked(grad, x, index, ptr, out)
    return _max_backward_whole(grad, x, index, ptr, out)


def _max_backward_whole(grad: Tensor, x: Tensor, index: Tensor,
                        ptr: Optional[Tensor], out: Tensor) -> Tensor:
    r""":func:`max_backward` in a few whole-tensor operations that never
    read a value back to the host: ties are always counted."""
    is_max = _is_max(x, out, index,
                     x.new_empty(x.shape, dtype=_count_dtype(x.dtype)))
    ties = segment_sum(is_max, index, ptr, out.size(0), exact=True)
    share = grad / ties.clamp_(min=1)
    return is_max.mul_(share.index_select(0, index)).to(x.dtype)


def _max_backward_blocked(grad: Tensor, x: Tensor, index: Tensor,
                          ptr: Optional[Tensor], out: Tensor) -> Tensor:
    r""":func:`max_backward` over blocks of :data:`BLOCK_BYTES` of rows,
    whose temporaries stay in cache, so that memory sees little more than
    one read of :obj:`x` and one write of the gradient.

    Ties are counted only when the maxima found outnumber the (set,
    feature) pairs, so data without ties costs one pass. Tied maxima are
    common after a ReLU (a feature that is zero on a whole set); they cost
    two more passes."""
    num_sets, channels = out.shape
    grad_x = torch.empty_like(x)
    step = max(BLOCK_BYTES // max(1, channels * x.element_size()), 1)
    blocks = list(zip(x.split(step), index.split(step), grad_x.split(step)))
    found = x.new_zeros((), dtype=torch.float64)
    # Gathered set rows go to one reused block-sized buffer.
    rows_buf = grad.new_empty(min(step, x.size(0)), channels)
    for x_block, rows, grad_block in blocks:
        gathered = rows_buf[:rows.numel()]
        _is_max(x_block, out, rows, grad_block, gathered)
        found += grad_block.sum(dtype=torch.float32)
        grad_block.mul_(torch.index_select(grad, 0, rows, out=gathered))
    # Without NaN every (set, feature) pair of a non-empty set has at least
    # one maximum, so as many maxima as pairs means no ties. A NaN maximum
    # has none and could hide a tie elsewhere.
    counts = set_counts(index, ptr, num_sets)
    pairs = int((counts > 0).sum()) * channels
    if float(found) == float(pairs) and not bool(out.isnan().any()):
        return grad_x
    ties = x.new_zeros(num_sets, channels, dtype=_count_dtype(x.dtype))
    buf = ties.new_empty(min(step, x.size(0)), channels)
    for x_block, rows, _ in blocks:
        ties.index_add_(0, rows, _is_max(x_block, out, rows,
                                         buf[:rows.numel()],
                                         rows_buf[:rows.numel()]))
    ties.clamp_(min=1)
    for _, rows, grad_block in blocks:
        grad_block.div_(ties.index_select(0, rows))
    return grad_x


class SegmentPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, ptr: Optional[Tensor],
                dim_size: int, reduce: str) -> Tensor:
        ctx.reduce = reduce
        if reduce == 'max':
            out = segment_max(x, index, dim_size)
            ctx.save_for_backward(x, index, out)
            ctx.ptr = ptr
            return out
        out = segment_sum(x, index, ptr, dim_size)
        if reduce == 'mean':
            count = _count(x, index, ptr, dim_size)
            out = out / count
            ctx.save_for_backward(index, count)
        else:
            ctx.save_for_backward(index)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.reduce == 'max':
            x, index, out = ctx.saved_tensors
            grad_x = max_backward(grad.contiguous(), x, index, ctx.ptr, out)
        elif ctx.reduce == 'mean':
            index, count = ctx.saved_tensors
            grad_x = _rows(grad / count, index)
        else:
            index, = ctx.saved_tensors
            grad_x = _rows(grad, index)
        return grad_x, None, None, None, None


def segment_pool(x: Tensor, index: Tensor, ptr: Optional[Tensor],
                 dim_size: int, reduce: str) -> Tensor:
    r"""Sum, mean or max of the rows of :obj:`x` set by set, with empty sets
    pooling to zero. :obj:`index` is the set id of every row; :obj:`ptr`
    (optional) the boundaries of sorted sets."""
    if x.dim() != 2:
        raise ValueError(f"'x' must be two-dimensional "
                         f"(got shape {tuple(x.shape)})")
    return SegmentPool.apply(x.contiguous(), index, ptr, dim_size, reduce)


class SetGather(torch.autograd.Function):
    r"""Copies each set's row to its elements. The backward pass sums the
    elements' gradients with :func:`segment_sum`, which stays accurate for
    huge sets."""
    @staticmethod
    def forward(ctx, src: Tensor, index: Tensor, ptr: Optional[Tensor]
                ) -> Tensor:
        ctx.save_for_backward(index)
        ctx.ptr = ptr
        ctx.num_sets = src.size(0)
        return _rows(src, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, = ctx.saved_tensors
        grad_src = segment_sum(grad.contiguous(), index, ctx.ptr,
                               ctx.num_sets)
        return grad_src, None, None


def gather_sets(src: Tensor, index: Tensor,
                ptr: Optional[Tensor] = None) -> Tensor:
    r""":obj:`src[index]` for set-level rows :obj:`src` of shape
    :math:`[B, F]`, with a fast backward pass."""
    return SetGather.apply(src, index, ptr)
