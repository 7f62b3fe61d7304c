r"""Adapters between PyG's ragged layout (rows + :obj:`batch`) and the padded
:math:`(B, M, F)` + mask layout of mask-based set code."""
from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from torch_geometric.utils import cumsum, to_dense_batch
from torch_geometric_deepsets.checks import check_weight
from torch_geometric_deepsets.grouping import resolve_sets


class DenseSets(NamedTuple):
    r"""Padded sets as rows: what :func:`from_dense` returns (without
    :obj:`weight`)."""
    #: Element features :math:`(N, F)`.
    x: Tensor
    #: Set id of every row :math:`(N)`.
    batch: Tensor
    #: Row boundaries of the sets :math:`(B + 1)`; counts empty sets too.
    ptr: Tensor

    @property
    def num_sets(self) -> int:
        r"""The number of sets :math:`B`, empty ones included."""
        return self.ptr.numel() - 1


class WeightedDenseSets(NamedTuple):
    r"""Padded sets with per-slot weights as rows: what :func:`from_dense`
    returns with :obj:`weight`."""
    #: Element features :math:`(N, F)`.
    x: Tensor
    #: Set id of every row :math:`(N)`.
    batch: Tensor
    #: Row boundaries of the sets :math:`(B + 1)`; counts empty sets too.
    ptr: Tensor
    #: The weight of every row :math:`(N)`, for the models' :obj:`weight`.
    weight: Tensor

    @property
    def num_sets(self) -> int:
        r"""The number of sets :math:`B`, empty ones included."""
        return self.ptr.numel() - 1


def from_dense(x: Tensor, mask: Optional[Tensor] = None,
               lengths: Optional[Tensor] = None,
               weight: Optional[Tensor] = None
               ) -> Union[DenseSets, 'WeightedDenseSets']:
    r"""Turns padded sets into rows, a :obj:`batch` vector and :obj:`ptr`
    (and the rows' weights, with :obj:`weight`).

    Args:
        x (torch.Tensor): Padded sets :math:`(B, M, F)`.
        mask (torch.Tensor, optional): Boolean :math:`(B, M)`, :obj:`True`
            where a real element sits. (default: :obj:`None`)
        lengths (torch.Tensor, optional): Integer :math:`(B)`, the number of
            real elements of each set, which sit in its first slots; an
            alternative to :obj:`mask`. (default: :obj:`None`)
        weight (torch.Tensor, optional): A real weight per slot
            :math:`(B, M)`, such as a float mask or energy fractions: a slot
            of weight :math:`k` counts as :math:`k` copies of its element,
            and a slot of weight 0 is no element (it is dropped, as a
            masked slot is). With it, :func:`from_dense` returns a
            :class:`WeightedDenseSets`. (default: :obj:`None`)

    With neither :obj:`mask` nor :obj:`lengths`, every slot is a real
    element (of weight :obj:`weight`, where given).

    Returns:
        :class:`DenseSets` :obj:`(x, batch, ptr)` of shapes :math:`(N, F)`,
        :math:`(N)` and :math:`(B + 1)`, with the elements of each set in
        their padded order. A set without real elements becomes an empty
        set, which :obj:`ptr` (and :obj:`num_sets`) still counts, so pass
        :obj:`ptr=ptr` (or :obj:`dim_size=num_sets`) to the models to keep
        trailing empty sets.
    """
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ValueError(f"'x' must be a padded tensor [B, M, F] "
                         f"(got {getattr(x, 'shape', type(x).__name__)})")
    num_sets, max_size = x.shape[:2]
    if mask is not None and lengths is not None:
        raise ValueError("Pass either 'mask' or 'lengths', not both")
    if lengths is not None:
        mask = _mask_from_lengths(lengths, num_sets, max_size, x.device)
    elif mask is None:
        mask = torch.ones(num_sets, max_size, dtype=torch.bool,
                          device=x.device)
    if not isinstance(mask, Tensor):
        raise TypeError(f"'mask' must be a bool tensor "
                        f"(got {type(mask).__name__})")
    if mask.dtype != torch.bool:
        raise TypeError(f"'mask' must be a bool tensor (got dtype "
                        f"{mask.dtype}); pass mask.bool() (True where an "
                        f"element sits), or weight=mask to weigh each "
                        f"element by its value")
    if tuple(mask.shape) != (num_sets, max_size):
        raise ValueError(f"'mask' has shape {tuple(mask.shape)} but 'x' holds "
                         f"{num_sets} sets of {max_size} slots")
    if weight is not None:
        if not isinstance(weight, Tensor) or \
                tuple(weight.shape) != (num_sets, max_size):
            got = tuple(weight.shape) if isinstance(weight, Tensor) else \
                type(weight).__name__
            raise ValueError(f"'weight' must hold one weight per slot, "
                             f"shape ({num_sets}, {max_size}) as 'x' holds "
                             f"{num_sets} sets of {max_size} slots "
                             f"(got {got})")
        check_weight(weight.reshape(-1), x.reshape(-1, x.size(-1)), 0)
        mask = mask & (weight != 0)
    batch = torch.arange(num_sets, device=x.device).unsqueeze(1)
    batch = batch.expand(num_sets, max_size)[mask]
    sets = DenseSets(x[mask], batch, cumsum(mask.sum(1)))
    if weight is None:
        return sets
    return WeightedDenseSets(*sets, weight[mask])


def _mask_from_lengths(lengths: Tensor, num_sets: int, max_size: int,
                       device: torch.device) -> Tensor:
    if not isinstance(lengths, Tensor) or lengths.dtype.is_floating_point \
            or lengths.dtype == torch.bool:
        raise TypeError(f"'lengths' must be an integer tensor (got "
                        f"{getattr(lengths, 'dtype', type(lengths).__name__)}"
                        f")")
    if tuple(lengths.shape) != (num_sets, ):
        raise ValueError(f"'lengths' has shape {tuple(lengths.shape)} but 'x' "
                         f"holds {num_sets} sets")
    if lengths.numel() > 0 and (int(lengths.min()) < 0
                                or int(lengths.max()) > max_size):
        raise ValueError(f"'lengths' must lie in [0, {max_size}], the number "
                         f"of slots (got {lengths.tolist()})")
    slots = torch.arange(max_size, device=device)
    return slots.unsqueeze(0) < lengths.to(device).unsqueeze(1)


def to_dense(x: Tensor, batch: Optional[Tensor] = None,
             dim_size: Optional[int] = None, max_size: Optional[int] = None,
             fill_value: float = 0.0, weight: Optional[Tensor] = None
             ) -> Union[Tuple[Tensor, Tensor], Tuple[Tensor, Tensor, Tensor]]:
    r"""Pads rows plus :obj:`batch` into :math:`(B, M, F)` and a mask, over
    :func:`torch_geometric.utils.to_dense_batch`. Rows need not be sorted by
    set: they are stably sorted first, so each set keeps its row order.

    Args:
        x (torch.Tensor): Element features :math:`(N, F)`.
        batch (torch.Tensor, optional): Set id of every row; :obj:`None` is
            one set. (default: :obj:`None`)
        dim_size (int, optional): Number of sets :math:`B` (counts trailing
            empty sets). (default: :obj:`None`)
        max_size (int, optional): Pad to this many slots :math:`M`; larger
            sets raise. (default: :obj:`None`, the largest set)
        fill_value (float, optional): Value of padded slots.
            (default: :obj:`0.0`)
        weight (torch.Tensor, optional): The weight of every row
            :math:`(N)`, padded to :math:`(B, M)` with 0 (no element).
            (default: :obj:`None`)

    Returns:
        :obj:`(x, mask)` of shapes :math:`(B, M, F)` and :math:`(B, M)`, and
        with :obj:`weight` also the padded weights :math:`(B, M)`.
    """
    batch, _, dim_size, _ = resolve_sets(x, batch, None, dim_size,
                                         matrix=True)
    if weight is not None:
        check_weight(weight, x, 0)
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        batch, perm = torch.sort(batch, stable=True)
        x = x[perm]
        weight = None if weight is None else weight[perm]
    if max_size is not None and batch.numel() > 0:
        largest = int(torch.bincount(batch, minlength=dim_size).max())
        if largest > max_size:
            raise ValueError(f"'max_size' is {max_size} but a set holds "
                             f"{largest} elements")
    dense, mask = to_dense_batch(x, batch, fill_value=fill_value,
                                 max_num_nodes=max_size, batch_size=dim_size)
    if weight is None:
        return dense, mask
    padded = weight.new_zeros(mask.shape)
    padded[mask] = weight
    return dense, mask, padded
