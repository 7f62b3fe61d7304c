r"""The forward prologue of the later-work modules (DeepSets++, FSPool,
Janossy pooling): validation of :obj:`x` and of the grouping into sets, then
the set id of every row and the number of sets. Each forward calls
:func:`resolve_sets` once, so moving them onto the core's shared prologue
(issue 11) changes this module only.
"""
from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric.nn.aggr import Aggregation
from torch_geometric_deepsets.pool import check_sets, check_x, set_index


def resolve_sets(
    x: Tensor,
    index: Optional[Tensor],
    ptr: Optional[Tensor],
    dim_size: Optional[int],
    channels: Optional[int] = None,
    dim: int = -2,
    batch_name: str = 'index',
) -> Tuple[Tensor, Optional[Tensor], int]:
    r"""Validates the input of a forward pass and returns
    :obj:`(index, ptr, dim_size)`, with :obj:`index` the set id of every row
    (also when only :obj:`ptr`, or neither, was given)."""
    check_x(x, channels=channels)
    if dim not in (-2, 0):
        raise ValueError(f"'dim' must be -2 or 0 (got {dim})")
    index, ptr, dim_size = check_sets(x, index, ptr, dim_size,
                                      batch_name=batch_name)
    index, dim_size = set_index(x, index, ptr, dim_size)
    return index, ptr, dim_size


class SetAggregation(Aggregation):
    r"""A :class:`~torch_geometric.nn.aggr.Aggregation` that, like
    :class:`~torch_geometric_deepsets.DeepSetsInvariant`, treats a call
    without :obj:`index` and :obj:`ptr` as one set, even when :obj:`x` has no
    rows (PyG's base class would count zero sets then)."""
    def __call__(self, x: Tensor, index: Optional[Tensor] = None,
                 ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                 dim: int = -2, **kwargs: Any) -> Tensor:
        # torch.fx proxies (PyG's to_hetero tracing) pass through untouched.
        if not isinstance(x, (Tensor, torch.fx.Proxy)):
            raise TypeError(f"'x' must be a torch.Tensor "
                            f"(got {type(x).__name__})")
        if index is None and ptr is None and dim_size is None:
            dim_size = 1
        return super().__call__(x, index, ptr=ptr, dim_size=dim_size,
                                dim=dim, **kwargs)
