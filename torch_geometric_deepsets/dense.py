r"""Adapters between PyG's ragged layout (rows + :obj:`batch`) and the padded
:math:`(B, M, F)` + mask layout of mask-based set code."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from torch_geometric.utils import to_dense_batch
from torch_geometric_deepsets.pool import resolve_sets


def from_dense(x: Tensor, mask: Optional[Tensor] = None
               ) -> Tuple[Tensor, Tensor]:
    r"""Turns padded sets into rows plus a :obj:`batch` vector.

    Args:
        x (torch.Tensor): Padded sets :math:`(B, M, F)`.
        mask (torch.Tensor, optional): Boolean :math:`(B, M)`, :obj:`True`
            where a real element sits. :obj:`None` means every slot is real.
            (default: :obj:`None`)

    Returns:
        :obj:`(x, batch)` of shapes :math:`(N, F)` and :math:`(N)`, with the
        elements of each set in their padded order. A set whose mask is all
        :obj:`False` becomes an empty set; pass :obj:`dim_size=B` to models
        so it is still counted.
    """
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ValueError(f"'x' must be a padded tensor [B, M, F] "
                         f"(got {getattr(x, 'shape', type(x).__name__)})")
    num_sets, max_size = x.shape[:2]
    if mask is None:
        mask = torch.ones(num_sets, max_size, dtype=torch.bool,
                          device=x.device)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"'mask' must be a bool tensor "
                        f"(got {getattr(mask, 'dtype', type(mask).__name__)})")
    if tuple(mask.shape) != (num_sets, max_size):
        raise ValueError(f"'mask' has shape {tuple(mask.shape)} but 'x' holds "
                         f"{num_sets} sets of {max_size} slots")
    batch = torch.arange(num_sets, device=x.device).unsqueeze(1)
    batch = batch.expand(num_sets, max_size)[mask]
    return x[mask], batch


def to_dense(x: Tensor, batch: Optional[Tensor] = None,
             dim_size: Optional[int] = None, max_size: Optional[int] = None,
             fill_value: float = 0.0) -> Tuple[Tensor, Tensor]:
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

    Returns:
        :obj:`(x, mask)` of shapes :math:`(B, M, F)` and :math:`(B, M)`.
    """
    if isinstance(x, Tensor) and x.dim() != 2:
        raise ValueError(f"'x' must be a matrix [num_elements, num_features] "
                         f"(got shape {tuple(x.shape)})")
    batch, _, dim_size, _ = resolve_sets(x, batch, None, dim_size)
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        batch, perm = torch.sort(batch, stable=True)
        x = x[perm]
    if max_size is not None and batch.numel() > 0:
        largest = int(torch.bincount(batch, minlength=dim_size).max())
        if largest > max_size:
            raise ValueError(f"'max_size' is {max_size} but a set holds "
                             f"{largest} elements")
    return to_dense_batch(x, batch, fill_value=fill_value,
                          max_num_nodes=max_size, batch_size=dim_size)
