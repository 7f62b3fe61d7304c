r"""Weighted sums, means and extremes: the reductions behind the
:obj:`weight` argument, where a row of weight :math:`k` counts as :math:`k`
copies of that row (weight 0: absent).

:obj:`weight` broadcasts against :obj:`x` (see
:func:`~torch_geometric_deepsets.grouping.element_weights`); every reduction
here is a plain, differentiable torch expression, so the weights may carry
gradients too."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric_deepsets._kernels.affine import bias_weight
from torch_geometric_deepsets._kernels.dispatch import segment_extreme
from torch_geometric_deepsets._kernels.sums import segment_sum


def weight_totals(weight: Tensor, x: Tensor, index: Optional[Tensor],
                  ptr: Optional[Tensor], dim_size: int, dim: int) -> Tensor:
    r"""The total weight :math:`\sum_{i \in s} w_i` of every set, shaped
    like the pooled rows of :obj:`x` with one feature."""
    shape = list(weight.shape)
    shape[dim] = x.size(dim)
    return segment_sum(weight.expand(shape), index, ptr, dim_size, dim)


def nonzero(total: Tensor) -> Tensor:
    r""":obj:`total` with its zeros replaced by ones: the divisor of a
    weighted mean, which an empty or all-zero-weight set pools to 0 with
    (its weighted sum is 0)."""
    return torch.where(total > 0, total, torch.ones_like(total))


def weighted_sum(x: Tensor, index: Optional[Tensor], ptr: Optional[Tensor],
                 dim_size: int, dim: int, weight: Tensor) -> Tensor:
    r""":math:`\sum_{i \in s} w_i \mathbf{x}_i` for every set."""
    return segment_sum(x * weight, index, ptr, dim_size, dim)


def weighted_mean(x: Tensor, index: Optional[Tensor], ptr: Optional[Tensor],
                  dim_size: int, dim: int, weight: Tensor) -> Tensor:
    r""":math:`\sum_{i \in s} w_i \mathbf{x}_i / \sum_{i \in s} w_i` for
    every set, 0 where the weights sum to 0."""
    total = weight_totals(weight, x, index, ptr, dim_size, dim)
    return weighted_sum(x, index, ptr, dim_size, dim, weight) / nonzero(total)


def weighted_extreme(x: Tensor, index: Optional[Tensor],
                     ptr: Optional[Tensor], dim_size: int, dim: int,
                     weight: Tensor, reduce: str = 'max') -> Tensor:
    r"""The maximum (or minimum) over the rows of positive weight of every
    set, 0 for a set without one (as for an empty set), with the gradient
    split evenly between tied rows of positive weight."""
    present = weight > 0
    if x.is_floating_point():
        fill = float('-inf') if reduce == 'max' else float('inf')
    else:
        info = torch.iinfo(x.dtype)
        fill = info.min if reduce == 'max' else info.max
    masked = torch.where(present, x, torch.full_like(x, fill))
    out = segment_extreme(masked, index, ptr, dim_size, dim, reduce)
    seen = weight_totals(present.to(out.dtype if out.is_floating_point()
                                    else torch.float32),
                         x, index, ptr, dim_size, dim)
    return torch.where(seen > 0, out, torch.zeros_like(out))


def pool_affine_weighted(h: Tensor, weight: Tensor, bias: Optional[Tensor],
                         index: Optional[Tensor], ptr: Optional[Tensor],
                         dim_size: int, mean: bool, dim: int,
                         w: Tensor) -> Tensor:
    r"""The pooled affine layer (see
    :mod:`~torch_geometric_deepsets._kernels.affine`) over weighted rows:
    :math:`(\sum_i w_i \mathbf{h}_i)\mathbf{W}^\top + W_s \mathbf{b}` for
    the sum, with the weighted mean and :math:`[W_s > 0]` for the mean
    (:math:`W_s = \sum_{i \in s} w_i`), on the pooled rows."""
    total = weight_totals(w, h, index, ptr, dim_size, dim)
    pooled = weighted_sum(h, index, ptr, dim_size, dim, w)
    if mean:
        pooled = pooled / nonzero(total)
    out = F.linear(pooled, weight)
    if bias is None:
        return out
    return torch.addcmul(out, bias_weight(mean, total).to(out.dtype), bias)
