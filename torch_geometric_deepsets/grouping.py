r"""How rows form sets: resolving :obj:`(index | ptr, dim_size, dim)` once per
call (:func:`resolve_sets`), as PyG's :meth:`Aggregation.__call__` does.

A batch of sets is stored like a PyG mini-batch of edgeless graphs: the
elements of all sets are the rows of one tensor :obj:`x` of shape
:math:`[*, N, F]`, and either a set-id vector (:obj:`index` or
:obj:`batch`) of shape :math:`[N]` (the set of each row, in any order) or a
:obj:`ptr` vector of shape :math:`[B + 1]` (the row boundaries of sorted
sets) says which rows form which set. Rows lie along :obj:`dim` (:obj:`-2`
by default, as for PyG's aggregations); the last dimension holds the
features.
"""
import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from torch_geometric_deepsets._kernels import ptr_to_index
from torch_geometric_deepsets.checks import (
    check_dim_size,
    check_id_range,
    check_ptr,
    check_ptr_values,
    check_set_ids,
    check_x,
    value_checks_enabled,
)


class Sets(NamedTuple):
    r"""The grouping of rows into sets after :func:`resolve_sets`."""
    index: Optional[Tensor]
    ptr: Optional[Tensor]
    dim_size: int
    dim: int


def resolve_sets(
    x: Tensor,
    index: Optional[Tensor] = None,
    ptr: Optional[Tensor] = None,
    dim_size: Optional[int] = None,
    dim: int = -2,
    index_name: str = 'batch',
    channels: Optional[int] = None,
    any_dim: bool = False,
    matrix: bool = False,
) -> Sets:
    r"""Validates :obj:`x` and the grouping of its rows into sets, and
    resolves :obj:`(index | ptr, dim_size)` once, as PyG's
    :meth:`Aggregation.__call__` does.

    With neither :obj:`index` nor :obj:`ptr`, all rows form set 0 (an
    all-zero :obj:`index` is returned); a larger :obj:`dim_size` adds empty
    sets after it, as in PyG. With :obj:`ptr`, :obj:`index` may
    stay :obj:`None` (:func:`element_index` builds it where needed).
    :obj:`dim_size`, the number of sets, is always filled in: from
    :obj:`ptr`, else from the largest id in :obj:`index` (a device sync on
    GPUs, as in PyG; pass :obj:`dim_size` to avoid it). The same read checks
    that no id is negative.

    Shape and dtype problems always raise. Problems that can only be seen in
    the values (ids out of range, :obj:`ptr` decreasing or not ending at the
    number of rows, :obj:`index` disagreeing with :obj:`ptr`) raise wherever
    :func:`~torch_geometric_deepsets.checks.value_checks_enabled` says, and
    wherever the range of the ids is read anyway.

    Raises:
        TypeError: if an argument has the wrong type or dtype.
        ValueError: if sizes or values are inconsistent; the message names the
            argument and the sizes involved.
    """
    dim = check_x(x, channels=channels, dim=dim, any_dim=any_dim,
                  matrix=matrix)
    num_rows = x.size(dim)
    if dim_size is not None:
        check_dim_size(dim_size)
    if index is not None:
        check_set_ids(index_name, index, x, dim)

    if ptr is not None:
        dim_size = check_ptr(ptr, x, dim_size)
        if value_checks_enabled(ptr):
            check_ptr_values(ptr, num_rows, index, index_name)
    elif index is not None:
        if index.numel() == 0:
            dim_size = 0 if dim_size is None else dim_size
        elif dim_size is None:
            dim_size = _count_sets(index, index_name)
        elif value_checks_enabled(index):
            lo, hi = torch.stack(torch.aminmax(index)).tolist()
            check_id_range(index_name, lo, hi, dim_size)
    else:
        if dim_size is None:
            dim_size = 1
        elif dim_size == 0 and num_rows > 0:
            raise ValueError(f"Without '{index_name}' or 'ptr' all rows form "
                             f"set 0, but 'dim_size' is 0 and 'x' has "
                             f"{num_rows} rows")
        index = torch.zeros(num_rows, dtype=torch.long, device=x.device)
    return Sets(index, ptr, dim_size, dim)


def _count_sets(index: Tensor, index_name: str) -> int:
    r"""The number of sets, one more than the largest id: read from the
    device (a sync, as in PyG) together with the smallest id, which is
    checked in the same read. A compiled graph reads only the largest (its
    value checks are off, see
    :func:`~torch_geometric_deepsets.checks.value_checks_enabled`)."""
    if torch.compiler.is_compiling():
        # .item(), not int(): a traced count, not a guard on its value.
        return index.max().item() + 1
    lo, hi = torch.stack(torch.aminmax(index)).tolist()
    check_id_range(index_name, lo, hi, None)
    return hi + 1


def element_index(x: Tensor, index: Optional[Tensor], ptr: Optional[Tensor],
                  dim: int = 0) -> Tensor:
    r"""The set id of every row of :obj:`x` (along :obj:`dim`), from
    :obj:`index` or :obj:`ptr` as :func:`resolve_sets` returned them."""
    if index is not None:
        return index
    assert ptr is not None
    return ptr_to_index(ptr, x.size(dim))


def element_weights(weight: Tensor, x: Tensor, dim: int) -> Tensor:
    r""":obj:`weight` (checked by
    :func:`~torch_geometric_deepsets.checks.check_weight`) as a tensor that
    broadcasts against :obj:`x` with its elements along :obj:`dim`
    (non-negative), in the dtype of a floating :obj:`x`."""
    if weight.dim() == 1:  # one weight per element, for every slice
        shape = [1] * x.dim()
        shape[dim] = -1
        weight = weight.view(shape)
    else:  # the shape of x without its features
        weight = weight.unsqueeze(-1)
    return weight.to(x.dtype) if x.is_floating_point() else weight


def fold_weight(weight: Tensor, x: Tensor, dim: int) -> Tensor:
    r""":obj:`weight` for :obj:`x` folded into a matrix (see
    :func:`~torch_geometric_deepsets.leading.fold_leading`): one weight per
    row, slice after slice."""
    if weight.dim() == 1:
        shape = list(x.shape[:-1])
        del shape[dim]
        return weight.repeat(math.prod(shape))
    return weight.movedim(dim, -1).reshape(-1)
