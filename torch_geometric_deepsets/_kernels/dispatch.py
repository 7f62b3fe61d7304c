r"""The entry points of the package's reductions, each choosing its kernel by
code path (:mod:`~torch_geometric_deepsets._kernels.paths`): an autograd
function in eager mode and on the device path, a custom operator in
compiled CPU graphs (where torch has them: :data:`CUSTOM_OPS`)."""
from typing import Optional

import torch
from torch import Tensor

from torch_geometric_deepsets._kernels import paths
from torch_geometric_deepsets._kernels.affine import PoolAffine, pool_affine_nd
from torch_geometric_deepsets._kernels.extremes import SegmentExtreme
from torch_geometric_deepsets._kernels.ids import (
    along,
    cpu_ids,
    ptr_to_index,
    set_counts,
)
from torch_geometric_deepsets._kernels.sums import segment_sum

#: Whether compiled CPU graphs call the package's custom operators
#: (:func:`torch.library.custom_op` exists from torch 2.4).
CUSTOM_OPS = hasattr(torch.library, 'custom_op')
if CUSTOM_OPS:
    from torch_geometric_deepsets._kernels import custom_ops


def _as_custom_op(x: Tensor, dim: int) -> bool:
    return CUSTOM_OPS and x.dim() == 2 and dim == 0 and paths.cpu_graph(x)


def segment_extreme(x: Tensor, index: Optional[Tensor], ptr: Optional[Tensor],
                    dim_size: int, dim: int = 0,
                    reduce: str = 'max') -> Tensor:
    r"""Per-set maximum (:obj:`reduce="max"`) or minimum (:obj:`"min"`)
    along :obj:`dim` (non-negative), 0 for empty sets, with the gradient
    split evenly between tied extremes.

    :obj:`ptr` alone is turned into set ids first: the backward pass of
    :func:`torch._segment_reduce`'s maximum (PyG's path for :obj:`ptr`)
    does not split the gradient of tied maxima evenly
    (``tests/_kernels/test_extremes.py``)."""
    if index is None:
        index = ptr_to_index(ptr, x.size(dim))
    if _as_custom_op(x, dim):
        return custom_ops.segment_extreme(x, index, dim_size, reduce)
    return SegmentExtreme.apply(x, index, dim_size, dim, reduce)


def segment_pool(x: Tensor, index: Optional[Tensor], ptr: Optional[Tensor],
                 dim_size: int, reduce: str, dim: int = 0) -> Tensor:
    r"""Sum, mean, max or min of the rows of :obj:`x` set by set along
    :obj:`dim` (non-negative), with empty sets pooling to zero."""
    if reduce in ('max', 'min'):
        return segment_extreme(x, index, ptr, dim_size, dim, reduce)
    out = segment_sum(x, index, ptr, dim_size, dim)
    if reduce == 'mean':
        counts = set_counts(index, ptr, dim_size, out.dtype).clamp_(min=1)
        out = out / along(counts, dim, out.dim())
    return out


def pool_affine(h: Tensor, weight: Tensor, bias: Optional[Tensor],
                index: Optional[Tensor], ptr: Optional[Tensor], dim_size: int,
                reduce: str, dim: int = 0) -> Tensor:
    r""":math:`\bigoplus_i (\mathbf{h}_i\mathbf{W}^\top + \mathbf{b})` per
    set for :obj:`reduce` :obj:`"sum"` or :obj:`"mean"`, computed on the
    pooled rows (:mod:`~torch_geometric_deepsets._kernels.affine`): 0 for an
    empty set's mean, as PyG gives."""
    index = cpu_ids(index, ptr, h, dim)
    mean = reduce == 'mean'
    if _as_custom_op(h, dim):
        return custom_ops.pool_affine(h, weight, bias, index, dim_size,
                                      mean)[0]
    if h.dim() == 2 and dim == 0:
        return PoolAffine.apply(h, weight, bias, index, ptr, dim_size, mean)
    return pool_affine_nd(h, weight, bias, index, ptr, dim_size, mean, dim)
