r"""Sum, mean and max pooling of rows grouped into sets: the reductions behind
PyG's :class:`SumAggregation`, :class:`MeanAggregation` and
:class:`MaxAggregation` in every layer and model of the package.

They give PyG's values (0 for an empty set) through plain torch operations
with native autograd, with two additions, both measured in
``benchmarks/bench.py``:

* max pooling has its own backward pass. It splits the gradient evenly
  between tied maxima, as :func:`torch.amax` and
  :meth:`Tensor.scatter_reduce` do, in fewer operations than autograd's
  formula for :meth:`Tensor.scatter_reduce`; on the CPU it works through the
  rows in cache-sized blocks (:func:`_max_backward_blocked`);
* on the host path (see :func:`host_path`), sums over sets longer than
  :data:`LONG_SET` rows are cut into chunks of :data:`CHUNK` rows whose
  partial sums are added in float64: a plain float32 sum of a million values
  near 1000 drifts by 1 %.

Everything else (GPU tensors, compiled graphs) takes the device path: no
value is ever read back to the host, and no output shape depends on data.
Graphs compiled for the CPU are the exception (see :func:`cpu_graph`): there
max pooling and the pooled affine layer run as custom operators
(:func:`torch.library.custom_op`) whose kernels are the eager ones above.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

import torch_geometric.typing
from torch_geometric.typing import torch_scatter
from torch_geometric.utils import cumsum, degree

#: Rows summed in one sequential run before partial sums are combined.
CHUNK = 64
#: Sets longer than this are summed in chunks of :data:`CHUNK` rows on the
#: host path.
LONG_SET = 2048
#: Bytes of element rows the CPU max backward handles at a time.
BLOCK_BYTES = 2**21


def host_path(tensor: Tensor) -> bool:
    r"""Whether work on :obj:`tensor` runs on the host path: eager mode on
    the CPU, where reading a value costs no device synchronisation.

    The host path may look at values: it validates them, sums long sets in
    chunks and picks the blocked max backward. Everything else (GPU and
    other devices, :func:`torch.compile` and :func:`torch.export` graphs,
    which cannot branch on data) takes the device path, which never reads a
    value and gives the same results up to floating-point rounding.
    """
    return (tensor.device.type == 'cpu'
            and not torch.compiler.is_compiling())


def cpu_graph(tensor: Tensor) -> bool:
    r"""Whether work on :obj:`tensor` is traced by :func:`torch.compile` for
    the CPU (not by :func:`torch.export`).

    There max pooling and the pooled affine layer enter the graph as custom
    operators with autograd formulas of their own
    (:func:`segment_max` and :func:`pool_affine`): inductor calls the eager
    kernels of this module, with host reads allowed (the graph runs on the
    host), and their backward passes take the pooled input :math:`\mathbf{h}`
    itself. The second point is what makes a compiled step no slower than
    an eager one (``benchmarks/bench.py``): when nothing after it reads
    :math:`\mathbf{h}`, autograd's partitioner keeps the ReLU that computed
    it as a boolean mask instead, and inductor's CPU code stores such a mask
    about 10x slower than the ReLU itself (torch 2.13; reproduced in
    :doc:`/benchmarks`). Exported programs keep plain ATen operations, so
    that they run without this package; other devices keep the device
    path.
    """
    return (tensor.device.type == 'cpu' and torch.compiler.is_compiling()
            and not torch.compiler.is_exporting())


def use_torch_scatter() -> bool:
    r"""Whether the optional :mod:`torch_scatter` backend is used for the
    chunked sums of long sets."""
    return bool(torch_geometric.typing.WITH_TORCH_SCATTER)


def along(vector: Tensor, dim: int, ndim: int) -> Tensor:
    r"""A view of the per-set :obj:`vector` (:math:`[B]`) that broadcasts
    against a tensor of :obj:`ndim` dimensions with sets along :obj:`dim`
    (non-negative)."""
    if dim == ndim - 1:
        return vector
    return vector.view([-1] + [1] * (ndim - dim - 1))


def set_counts(index: Optional[Tensor], ptr: Optional[Tensor], dim_size: int,
               dtype: torch.dtype = torch.long) -> Tensor:
    r"""Number of rows of each set, shape :math:`[B]`, from :obj:`ptr` where
    given, else from the set id of every row with PyG's
    :func:`~torch_geometric.utils.degree` (a scatter into a buffer of
    :obj:`dim_size`: no output shape depends on data, unlike
    :func:`torch.bincount`)."""
    if ptr is not None:
        return (ptr[1:] - ptr[:-1]).to(dtype)
    return degree(index, dim_size, dtype=dtype)


def _pooled_shape(x: Tensor, dim: int, dim_size: int):
    shape = list(x.shape)
    shape[dim] = dim_size
    return shape


def _expanded(index: Tensor, x: Tensor, dim: int) -> Tensor:
    r""":obj:`index` broadcast to the shape of :obj:`x` along :obj:`dim`, as
    :meth:`Tensor.scatter_reduce_` wants it."""
    shape = [1] * x.dim()
    shape[dim] = -1
    return index.view(shape).expand_as(x)


def ptr_to_index(ptr: Tensor, num_rows: int) -> Tensor:
    r"""The set id of every row from :obj:`ptr`, without reading a value
    back to the host: PyG's :func:`~torch_geometric.index.ptr2index`, in
    two fewer operations (no :func:`torch.arange` and no gather of the
    :math:`N` ids; pinned equal by a test)."""
    return torch.repeat_interleave(ptr[1:] - ptr[:-1], output_size=num_rows)


def cpu_ids(index: Optional[Tensor], ptr: Optional[Tensor], x: Tensor,
            dim: int) -> Optional[Tensor]:
    r"""The set id of every row for :obj:`ptr` input on the CPU (eager or
    compiled), else :obj:`index` as given.

    On the CPU, :func:`torch._segment_reduce`'s sum (PyG's path for
    :obj:`ptr` without :mod:`torch_scatter`) took 10x the time of
    :meth:`Tensor.index_add_`, and its backward 10x that of
    :meth:`Tensor.index_select` (torch 2.13, 65k x 128 rows), while the ids
    cost one :func:`torch.repeat_interleave`. Other devices keep the segment
    kernel, which needs no ids."""
    if index is None and x.device.type == 'cpu':
        return ptr_to_index(ptr, x.size(dim))
    return index


def _offsets(ptr: Tensor, x: Tensor, dim: int) -> Tensor:
    r""":obj:`ptr` as :func:`torch._segment_reduce` wants it for sets along
    :obj:`dim`: one copy per index of the leading dimensions."""
    return ptr.expand(x.shape[:dim] + ptr.shape) if dim else ptr


# Sums ########################################################################


def _segment_sum_raw(x: Tensor, ptr: Tensor) -> Tensor:
    if use_torch_scatter():
        return torch_scatter.segment_csr(x, ptr, reduce='sum')
    return torch._segment_reduce(x, 'sum', offsets=ptr, initial=0)


def _chunked_sum(x: Tensor, ptr: Tensor) -> Tensor:
    r"""Per-set sums of the rows of the 2-D :obj:`x` (grouped by set, with
    boundaries :obj:`ptr`) that stay accurate for huge sets.

    Both segment kernels add a segment's rows one after the other, so the
    rounding error grows with the set size. Here every segment is also cut
    at multiples of :data:`CHUNK` rows, the pieces are summed, and the
    partial sums are added in float64."""
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
            ptr = cumsum(counts)
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
                dim_size: int, dim: int = 0) -> Tensor:
    r"""Per-set sum along :obj:`dim` (non-negative) of the rows of
    :obj:`x`; :obj:`index` is the set id of every row, :obj:`ptr` the
    boundaries of sorted sets (at least one of them given)."""
    if host_path(x) and x.size(dim) > LONG_SET:
        counts = set_counts(index, ptr, dim_size)
        if _needs_chunks(x, counts):
            return _AccurateSum.apply(x, index, ptr, counts, dim_size, dim)
    index = cpu_ids(index, ptr, x, dim)
    if index is None:
        return torch._segment_reduce(x, 'sum', offsets=_offsets(ptr, x, dim),
                                     axis=dim, initial=0)
    out = x.new_zeros(_pooled_shape(x, dim, dim_size))
    return out.index_add_(dim, index, x)


# Max #########################################################################


def _count_dtype(dtype: torch.dtype) -> torch.dtype:
    r"""A dtype that counts tied rows exactly (half precision stops being
    exact at 257 (bfloat16) or 2049 (float16) rows)."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _max_backward_whole(grad: Tensor, x: Tensor, index: Tensor, out: Tensor,
                        dim: int) -> Tensor:
    r"""The max gradient in a few whole-tensor operations that never read a
    value back to the host: :obj:`grad` of a set goes to the rows holding
    its maximum, split evenly between ties."""
    is_max = torch.eq(x, out.index_select(dim, index)).to(
        _count_dtype(x.dtype))
    ties = is_max.new_zeros(out.shape).index_add_(dim, index, is_max)
    share = grad / ties.clamp_(min=1)
    return is_max.mul_(share.index_select(dim, index)).to(x.dtype)


def _is_max(x: Tensor, out: Tensor, index: Tensor, buf: Tensor,
            rows_buf: Tensor) -> Tensor:
    r"""1.0 where a row of :obj:`x` holds its set's maximum, else 0.0,
    written to :obj:`buf` (:obj:`rows_buf` takes the gathered maxima).
    Comparisons that write booleans measured 4x slower on the CPU."""
    maxima = torch.index_select(out, 0, index, out=rows_buf)
    return torch.eq(x, maxima, out=buf)


def _max_backward_blocked(grad: Tensor, x: Tensor, index: Tensor,
                          out: Tensor) -> Tensor:
    r"""The max gradient of 2-D :obj:`x` on the CPU, over blocks of
    :data:`BLOCK_BYTES` of rows whose temporaries stay in cache, so that
    memory sees little more than one read of :obj:`x` and one write of the
    gradient.

    Ties are counted only when the maxima found outnumber the (set,
    feature) pairs, so data without ties costs one pass. Tied maxima are
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
        _is_max(x_block, out, rows, grad_block, gathered)
        found += grad_block.sum(dtype=torch.float32)
        grad_block.mul_(torch.index_select(grad, 0, rows, out=gathered))
    # Without NaN every (set, feature) pair of a non-empty set has at least
    # one maximum, so as many maxima as pairs means no ties. A NaN maximum
    # has none and could hide a tie elsewhere.
    counts = set_counts(index, None, num_sets)
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


def _max_forward(x: Tensor, index: Tensor, dim_size: int,
                 dim: int) -> Tensor:
    out = x.new_zeros(_pooled_shape(x, dim, dim_size))
    return out.scatter_reduce_(dim, _expanded(index, x, dim), x,
                               reduce='amax', include_self=False)


def _max_backward(grad: Tensor, x: Tensor, index: Tensor, out: Tensor,
                  dim: int) -> Tensor:
    # The blocked form writes into buffers, which autograd cannot follow
    # when the backward pass is itself differentiated.
    if (host_path(x) and x.dim() == 2 and dim == 0
            and not grad.requires_grad):
        return _max_backward_blocked(grad.contiguous(), x, index, out)
    return _max_backward_whole(grad, x, index, out, dim)


class _SegmentMax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, dim_size: int,
                dim: int) -> Tensor:
        out = _max_forward(x, index, dim_size, dim)
        ctx.save_for_backward(x, index, out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, index, out = ctx.saved_tensors
        return _max_backward(grad, x, index, out, ctx.dim), None, None, None


@torch.library.custom_op('torch_geometric_deepsets::segment_max',
                         mutates_args=())
def _segment_max_op(x: Tensor, index: Tensor, dim_size: int) -> Tensor:
    r""":func:`segment_max` of 2-D :obj:`x` over its rows in compiled CPU
    graphs (see :func:`cpu_graph`)."""
    return _max_forward(x, index, dim_size, 0)


@_segment_max_op.register_fake
def _(x: Tensor, index: Tensor, dim_size: int) -> Tensor:
    return x.new_empty(dim_size, x.size(1))


@torch.library.custom_op('torch_geometric_deepsets::segment_max_backward',
                         mutates_args=())
def _segment_max_backward_op(grad: Tensor, x: Tensor, index: Tensor,
                             out: Tensor) -> Tensor:
    # At run time this is eager code on the CPU: the blocked backward.
    return _max_backward(grad, x, index, out, 0)


@_segment_max_backward_op.register_fake
def _(grad: Tensor, x: Tensor, index: Tensor, out: Tensor) -> Tensor:
    return torch.empty_like(x)


def _segment_max_setup(ctx, inputs, output) -> None:
    x, index, _ = inputs
    ctx.save_for_backward(x, index, output)


def _segment_max_grad(ctx, grad: Tensor):
    x, index, out = ctx.saved_tensors
    return _segment_max_backward_op(grad, x, index, out), None, None


_segment_max_op.register_autograd(_segment_max_grad,
                                  setup_context=_segment_max_setup)


def segment_max(x: Tensor, index: Optional[Tensor], ptr: Optional[Tensor],
                dim_size: int, dim: int = 0) -> Tensor:
    r"""Per-set maximum along :obj:`dim` (non-negative), 0 for empty sets,
    with the gradient split evenly between tied maxima.

    :obj:`ptr` alone is turned into set ids first: the backward pass of
    :func:`torch._segment_reduce`'s maximum (PyG's path for :obj:`ptr`)
    gives tied maxima of zero or below the full gradient each (torch 2.13;
    pinned by a test)."""
    if index is None:
        index = ptr_to_index(ptr, x.size(dim))
    if cpu_graph(x) and x.dim() == 2 and dim == 0:
        return _segment_max_op(x, index, dim_size)
    return _SegmentMax.apply(x, index, dim_size, dim)


def segment_pool(x: Tensor, index: Optional[Tensor], ptr: Optional[Tensor],
                 dim_size: int, reduce: str, dim: int = 0) -> Tensor:
    r"""Sum, mean or max of the rows of :obj:`x` set by set along
    :obj:`dim` (non-negative), with empty sets pooling to zero."""
    if reduce == 'max':
        return segment_max(x, index, ptr, dim_size, dim)
    out = segment_sum(x, index, ptr, dim_size, dim)
    if reduce == 'mean':
        counts = set_counts(index, ptr, dim_size, out.dtype).clamp_(min=1)
        out = out / along(counts, dim, out.dim())
    return out


def _pool_for_affine(h: Tensor, index: Optional[Tensor],
                     ptr: Optional[Tensor], dim_size: int, mean: bool
                     ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    r"""The pooled rows :math:`\mathbf{P}` of 2-D :obj:`h` (sums, or means
    with 0 for empty sets), the weight :math:`w_s` of the bias in
    :math:`\bigoplus_i (\mathbf{h}_i\mathbf{W}^\top + \mathbf{b}) =
    \mathbf{P}_s\mathbf{W}^\top + w_s\mathbf{b}` (the set size for the
    sum, :math:`[n_s > 0]` for the mean), and the divisors
    :math:`\max(n_s, 1)` of a mean over :obj:`index` (:obj:`None`
    otherwise)."""
    dtype = _count_dtype(h.dtype)
    if not mean:
        return (segment_sum(h, index, ptr, dim_size),
                set_counts(index, ptr, dim_size, dtype), None)
    if index is None and not host_path(h):
        nonempty = (ptr[1:] != ptr[:-1]).to(dtype)
        pooled = torch._segment_reduce(h, 'mean', offsets=ptr, initial=0)
        return pooled, nonempty, None
    counts = set_counts(index, ptr, dim_size, dtype)
    divisors = counts.clamp(min=1).unsqueeze(-1)
    pooled = segment_sum(h, index, ptr, dim_size) / divisors.to(h.dtype)
    return pooled, counts.clamp_(max=1), divisors


class _PoolAffine(torch.autograd.Function):
    r""":math:`\mathbf{P}_s \mathbf{W}^\top + w_s \mathbf{b}` (see
    :func:`_pool_for_affine`) with a backward pass of its own, so that a
    training step dispatches no more operations than the same layer applied
    before pooling (autograd's formulas for this expression take more)."""
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Optional[Tensor],
                index: Optional[Tensor], ptr: Optional[Tensor],
                dim_size: int, mean: bool) -> Tensor:
        pooled, bias_weight, divisors = _pool_for_affine(
            h, index, ptr, dim_size, mean)
        out = torch.mm(pooled, weight.t())
        if bias is not None:
            out = torch.addr(out, bias_weight.to(out.dtype),
                             bias.to(out.dtype))
        ctx.save_for_backward(h, weight, pooled, bias_weight, divisors,
                              index, ptr)
        ctx.mean = mean
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        (h, weight, pooled, bias_weight, divisors, index,
         ptr) = ctx.saved_tensors
        if torch.is_grad_enabled():
            # Differentiating this backward pass (create_graph=True) needs
            # the pooled rows as a function of h, not as a saved constant,
            # and a gather that has a derivative itself.
            pooled = _pool_for_affine(h, index, ptr, pooled.size(0),
                                      ctx.mean)[0]
            if index is None:
                index = ptr_to_index(ptr, h.size(0))
                if ctx.mean:
                    divisors = set_counts(None, ptr, pooled.size(0), grad.dtype
                                          ).clamp_(min=1).unsqueeze(-1)
        grad_h = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_pooled = torch.mm(grad, weight.to(grad.dtype))
            if index is None:
                grad_h = torch.ops.aten._segment_reduce_backward(
                    grad_pooled, pooled, h, 'mean' if ctx.mean else 'sum',
                    offsets=ptr, axis=0, initial=0)
            else:
                if divisors is not None:
                    grad_pooled = grad_pooled / divisors.to(grad.dtype)
                grad_h = grad_pooled.index_select(0, index)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.mm(grad.t(), pooled.to(grad.dtype))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = torch.mv(grad.t(), bias_weight.to(grad.dtype))
        return grad_h, grad_weight, grad_bias, None, None, None, None


def _host_pooled(h: Tensor, index: Tensor, counts: Tensor,
                 mean: bool) -> Tensor:
    r"""The pooled rows of :func:`_pool_for_affine` on the host path, inside
    the custom operators below: the same operations (so the same values),
    in fewer steps, with the set sizes :obj:`counts` given."""
    if h.size(0) > LONG_SET and _needs_chunks(h, counts):
        pooled = _AccurateSum.apply(h, index, None, counts, counts.size(0),
                                    0)
    else:
        pooled = h.new_zeros(counts.size(0), h.size(1)).index_add_(0, index,
                                                                   h)
    if mean:
        pooled = pooled / counts.clamp(min=1).unsqueeze(-1).to(h.dtype)
    return pooled


@torch.library.custom_op('torch_geometric_deepsets::pool_affine',
                         mutates_args=())
def _pool_affine_op(h: Tensor, weight: Tensor, bias: Optional[Tensor],
                    index: Tensor, dim_size: int, mean: bool
                    ) -> Tuple[Tensor, Tensor]:
    r"""The forward pass of :class:`_PoolAffine` in compiled CPU graphs (see
    :func:`cpu_graph`), with the set sizes as a second output."""
    # bincount: the same counts as PyG's degree, in fewer operations; its
    # length depends on data, which is allowed at run time on the host.
    counts = torch.bincount(index, minlength=dim_size).to(
        _count_dtype(h.dtype))
    out = torch.mm(_host_pooled(h, index, counts, mean), weight.t())
    if bias is not None:
        bias_weight = counts.clamp(max=1) if mean else counts
        out = torch.addr(out, bias_weight.to(out.dtype), bias.to(out.dtype))
    return out, counts


@_pool_affine_op.register_fake
def _(h: Tensor, weight: Tensor, bias: Optional[Tensor], index: Tensor,
      dim_size: int, mean: bool) -> Tuple[Tensor, Tensor]:
    return (h.new_empty(dim_size, weight.size(0)),
            h.new_empty(dim_size, dtype=_count_dtype(h.dtype)))


@torch.library.custom_op('torch_geometric_deepsets::pool_affine_weight_grad',
                         mutates_args=())
def _pool_affine_weight_grad(grad: Tensor, h: Tensor, index: Tensor,
                             counts: Tensor, mean: bool) -> Tensor:
    r"""The weight gradient of :func:`_pool_affine_op`,
    :math:`\mathbf{G}^\top\mathbf{P}`, with the pooled rows
    :math:`\mathbf{P}` computed again from :obj:`h` (one sum over the rows)
    rather than saved: taking :obj:`h` is what keeps it, not a boolean ReLU
    mask, for the backward pass (see :func:`cpu_graph`)."""
    pooled = _host_pooled(h, index, counts, mean)
    return torch.mm(grad.t(), pooled.to(grad.dtype))


@_pool_affine_weight_grad.register_fake
def _(grad: Tensor, h: Tensor, index: Tensor, counts: Tensor,
      mean: bool) -> Tensor:
    return grad.new_empty(grad.size(1), h.size(1))


def _pool_affine_setup(ctx, inputs, output) -> None:
    h, weight, bias, index, _, mean = inputs
    ctx.save_for_backward(h, weight, index, output[1])
    ctx.mean = mean
    ctx.has_bias = bias is not None


def _pool_affine_grad(ctx, grad: Tensor, _):
    # Everything but the weight gradient is traced, so that inductor fuses
    # the gather of the input gradient into the ReLU backward after it.
    h, weight, index, counts = ctx.saved_tensors
    grad_h = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_pooled = torch.mm(grad, weight.to(grad.dtype))
        if ctx.mean:
            grad_pooled = grad_pooled / counts.clamp(min=1).unsqueeze(-1).to(
                grad.dtype)
        grad_h = grad_pooled.index_select(0, index)
    if ctx.needs_input_grad[1]:
        grad_weight = _pool_affine_weight_grad(grad, h, index, counts,
                                               ctx.mean)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        bias_weight = counts.clamp(max=1) if ctx.mean else counts
        grad_bias = torch.mv(grad.t(), bias_weight.to(grad.dtype))
    return grad_h, grad_weight, grad_bias, None, None, None


_pool_affine_op.register_autograd(_pool_affine_grad,
                                  setup_context=_pool_affine_setup)


def pool_affine(h: Tensor, weight: Tensor, bias: Optional[Tensor],
                index: Optional[Tensor], ptr: Optional[Tensor], dim_size: int,
                reduce: str, dim: int = 0) -> Tensor:
    r""":math:`\bigoplus_i (\mathbf{h}_i\mathbf{W}^\top + \mathbf{b})`
    per set for :obj:`reduce` :obj:`"sum"` or :obj:`"mean"`, computed on the
    pooled rows: :math:`\mathbf{S}_s \mathbf{W}^\top + n_s \mathbf{b}`
    with :math:`\mathbf{S}_s = \sum_i \mathbf{h}_i` and :math:`n_s` the
    set size, divided by :math:`\max(n_s, 1)` for the mean (0 for an empty
    set, as PyG's mean gives)."""
    index = cpu_ids(index, ptr, h, dim)
    if h.dim() == 2 and dim == 0 and cpu_graph(h):
        return _pool_affine_op(h, weight, bias, index, dim_size,
                               reduce == 'mean')[0]
    if h.dim() == 2 and dim == 0:
        return _PoolAffine.apply(h, weight, bias, index, ptr, dim_size,
                                 reduce == 'mean')
    out = F.linear(segment_sum(h, index, ptr, dim_size, dim), weight)
    counts = set_counts(index, ptr, dim_size, out.dtype)
    if bias is not None:
        out = torch.addcmul(out, along(counts, dim, out.dim()), bias)
    if reduce == 'mean':
        out = out / along(counts.clamp(min=1), dim, out.dim())
    return out
