r"""The weighted forms of PyG's aggregations: a row of weight :math:`k`
counts as :math:`k` copies of that row (weight 0: absent), and real weights
extend the same formulas. With :math:`W_s = \sum_{i \in s} w_i`:

.. list-table::
    :header-rows: 1

    * - aggregation
      - weighted form
    * - sum, mean
      - :math:`\sum_i w_i \mathbf{x}_i`, :math:`\sum_i w_i \mathbf{x}_i /
        W_s` (0 where :math:`W_s = 0`, as for an empty set)
    * - max, min
      - over the rows of positive weight (0 for a set without one)
    * - var, std
      - :math:`E_w[\mathbf{x}^2] - E_w[\mathbf{x}]^2` with :math:`E_w` the
        weighted mean (std: its clamped square root, as PyG)
    * - softmax
      - :math:`\sum_i \alpha_i \mathbf{x}_i`, :math:`\alpha_i = w_i
        e^{t\mathbf{x}_i} / \sum_j w_j e^{t\mathbf{x}_j}`
    * - powermean
      - :math:`(\sum_i w_i \mathbf{x}_i^p / W_s)^{1/p}` (clamped as PyG)

Each form is declared for its class
(:func:`~torch_geometric_deepsets.capabilities.declare_weighted`); the
aggregations whose result is not a function of copies of rows alone are
declared with their reason."""
import contextlib
import math
from typing import Optional, Union

import torch
from torch import Tensor

from torch_geometric.nn.aggr import (
    Aggregation,
    GraphMultisetTransformer,
    GRUAggregation,
    LCMAggregation,
    LSTMAggregation,
    MaxAggregation,
    MeanAggregation,
    MedianAggregation,
    MinAggregation,
    MLPAggregation,
    MulAggregation,
    PatchTransformerAggregation,
    PowerMeanAggregation,
    QuantileAggregation,
    SetTransformerAggregation,
    SoftmaxAggregation,
    SortAggregation,
    StdAggregation,
    SumAggregation,
    VarAggregation,
)
from torch_geometric_deepsets._kernels import segment_sum
from torch_geometric_deepsets._kernels.weighted import (
    weighted_extreme,
    weighted_mean,
    weighted_sum,
)
from torch_geometric_deepsets.capabilities import (
    ATTENTION,
    ORDER_STATISTICS,
    SEQUENCES,
    declare_not_weighted,
    declare_weighted,
)
from torch_geometric_deepsets.grouping import element_index

declare_not_weighted(ORDER_STATISTICS, MedianAggregation,
                     QuantileAggregation, SortAggregation)
declare_not_weighted(SEQUENCES, LSTMAggregation, GRUAggregation)
declare_not_weighted(ATTENTION, SetTransformerAggregation,
                     GraphMultisetTransformer, PatchTransformerAggregation)
declare_not_weighted('it works on the whole padded (or sorted) set at once',
                     MLPAggregation, LCMAggregation)
declare_not_weighted('its weighted form, a product of x^w, is not real for '
                     'negative x', MulAggregation)

Rows = Optional[Tensor]


@declare_weighted(SumAggregation)
def _sum(aggr: Aggregation, x: Tensor, index: Rows, ptr: Rows,
         dim_size: int, dim: int, weight: Tensor) -> Tensor:
    return weighted_sum(x, index, ptr, dim_size, dim, weight)


@declare_weighted(MeanAggregation)
def _mean(aggr: Aggregation, x: Tensor, index: Rows, ptr: Rows,
          dim_size: int, dim: int, weight: Tensor) -> Tensor:
    return weighted_mean(x, index, ptr, dim_size, dim, weight)


@declare_weighted(MaxAggregation)
def _max(aggr: Aggregation, x: Tensor, index: Rows, ptr: Rows,
         dim_size: int, dim: int, weight: Tensor) -> Tensor:
    return weighted_extreme(x, index, ptr, dim_size, dim, weight, 'max')


@declare_weighted(MinAggregation)
def _min(aggr: Aggregation, x: Tensor, index: Rows, ptr: Rows,
         dim_size: int, dim: int, weight: Tensor) -> Tensor:
    return weighted_extreme(x, index, ptr, dim_size, dim, weight, 'min')


@declare_weighted(VarAggregation)
def _var(aggr: VarAggregation, x: Tensor, index: Rows, ptr: Rows,
         dim_size: int, dim: int, weight: Tensor) -> Tensor:
    mean = weighted_mean(x, index, ptr, dim_size, dim, weight)
    with _no_grad_if(aggr.semi_grad):
        squares = weighted_mean(x * x, index, ptr, dim_size, dim, weight)
    return squares - mean * mean


@declare_weighted(StdAggregation)
def _std(aggr: StdAggregation, x: Tensor, index: Rows, ptr: Rows,
         dim_size: int, dim: int, weight: Tensor) -> Tensor:
    var = _var(aggr.var_aggr, x, index, ptr, dim_size, dim, weight)
    out = var.clamp(min=1e-5).sqrt()
    return out.masked_fill(out <= math.sqrt(1e-5), 0.0)


def _per_channel(aggr: Aggregation, value: Union[float, Tensor], x: Tensor,
                 dim: int) -> Union[float, Tensor]:
    r"""A learnable temperature or power of :obj:`aggr` shaped for the
    features (as PyG's aggregation shapes it)."""
    if aggr.channels != 1:
        aggr.assert_two_dimensional_input(x, dim)
        return value.view(-1, aggr.channels)
    return value


def _plain(value: Union[float, Tensor]) -> bool:
    return isinstance(value, (int, float)) and value == 1


@declare_weighted(SoftmaxAggregation)
def _softmax(aggr: SoftmaxAggregation, x: Tensor, index: Rows, ptr: Rows,
             dim_size: int, dim: int, weight: Tensor) -> Tensor:
    t = _per_channel(aggr, aggr.t, x, dim)
    scaled = x if _plain(t) else x * t
    ids = element_index(x, index, ptr, dim)
    with _no_grad_if(not aggr.learn and aggr.semi_grad):
        # Any per-set shift gives the same result; the largest value of the
        # rows of positive weight keeps the exponentials finite.
        shift = weighted_extreme(scaled.detach(), index, ptr, dim_size, dim,
                                 weight, 'max')
        terms = weight * (scaled - shift.index_select(dim, ids)).exp()
        total = segment_sum(terms, index, ptr, dim_size, dim)
        alpha = terms / (total + 1e-16).index_select(dim, ids)
    return segment_sum(x * alpha, index, ptr, dim_size, dim)


@declare_weighted(PowerMeanAggregation)
def _power_mean(aggr: PowerMeanAggregation, x: Tensor, index: Rows,
                ptr: Rows, dim_size: int, dim: int,
                weight: Tensor) -> Tensor:
    p = _per_channel(aggr, aggr.p, x, dim)
    if not _plain(p):
        x = x.clamp(min=aggr.min_value, max=aggr.max_value).pow(p)
    out = weighted_mean(x, index, ptr, dim_size, dim, weight)
    if not _plain(p):
        out = out.clamp(min=aggr.min_value, max=aggr.max_value).pow(1. / p)
    return out


def _no_grad_if(condition: bool):
    return torch.no_grad() if condition else contextlib.nullcontext()
