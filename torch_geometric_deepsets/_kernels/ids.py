r"""Set ids, set sizes and the shapes of pooled tensors: the bookkeeping every
reduction shares. Nothing here reads a value back to the host."""
from typing import List, Optional

import torch
from torch import Tensor

from torch_geometric.utils import degree


def ptr_to_index(ptr: Tensor, num_rows: int) -> Tensor:
    r"""The set id of every row from :obj:`ptr`: PyG's
    :func:`~torch_geometric.index.ptr2index` in two fewer operations (no
    :func:`torch.arange` and no gather of the :math:`N` ids), equal to it
    (``tests/_kernels/test_ids.py``)."""
    return torch.repeat_interleave(ptr[1:] - ptr[:-1], output_size=num_rows)


def cpu_ids(index: Optional[Tensor], ptr: Optional[Tensor], x: Tensor,
            dim: int) -> Optional[Tensor]:
    r"""The set id of every row for :obj:`ptr` input on the CPU (eager or
    compiled), else :obj:`index` as given.

    On the CPU, :func:`torch._segment_reduce` (PyG's path for :obj:`ptr`
    without :mod:`torch_scatter`) and its backward are much slower than
    :meth:`Tensor.index_add_` and :meth:`Tensor.index_select` over the ids,
    which cost one :func:`torch.repeat_interleave` (:doc:`/benchmarks`).
    Other devices keep the segment kernel, which needs no ids."""
    if index is None and x.device.type == 'cpu':
        return ptr_to_index(ptr, x.size(dim))
    return index


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


def count_dtype(dtype: torch.dtype) -> torch.dtype:
    r"""A floating dtype that counts rows exactly for values of
    :obj:`dtype` (half precisions stop being exact at 257 (bfloat16) or
    2049 (float16) rows)."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def along(vector: Tensor, dim: int, ndim: int) -> Tensor:
    r"""A view of the per-set :obj:`vector` (:math:`[B]`) that broadcasts
    against a tensor of :obj:`ndim` dimensions with sets along :obj:`dim`
    (non-negative)."""
    if dim == ndim - 1:
        return vector
    return vector.view([-1] + [1] * (ndim - dim - 1))


def pooled_shape(x: Tensor, dim: int, dim_size: int) -> List[int]:
    r"""The shape of :obj:`x` pooled into :obj:`dim_size` sets along
    :obj:`dim`."""
    shape = list(x.shape)
    shape[dim] = dim_size
    return shape


def expanded(index: Tensor, x: Tensor, dim: int) -> Tensor:
    r""":obj:`index` broadcast to the shape of :obj:`x` along :obj:`dim`, as
    :meth:`Tensor.scatter_reduce_` wants it."""
    shape = [1] * x.dim()
    shape[dim] = -1
    return index.view(shape).expand_as(x)


def offsets(ptr: Tensor, x: Tensor, dim: int) -> Tensor:
    r""":obj:`ptr` as :func:`torch._segment_reduce` wants it for sets along
    :obj:`dim`: one copy per index of the leading dimensions."""
    return ptr.expand(x.shape[:dim] + ptr.shape) if dim else ptr
