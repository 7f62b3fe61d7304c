r"""The state of each decomposable pooling streamed in chunks.

A decomposable pooling :math:`\bigoplus` is a function of a few per-set
sufficient statistics, each a sum over the set's elements (or a running
extreme), so the rows of a set may arrive in any number of chunks, in any
order, and on any number of processes:

.. list-table::
    :header-rows: 1

    * - pooling
      - per-set state
      - pooled row
    * - sum, mean
      - :math:`\mathbf{s} = \sum_i \mathbf{h}_i`, :math:`n`
      - :math:`\mathbf{s}`, :math:`\mathbf{s} / \max(n, 1)`
    * - max, min
      - running maximum (minimum) :math:`\mathbf{m}`, ties :math:`\mathbf{k}`
      - :math:`\mathbf{m}` (0 for an empty set)
    * - var, std
      - :math:`\sum_i \mathbf{h}_i`, :math:`\sum_i \mathbf{h}_i^2`, :math:`n`
      - as PyG: :math:`E[\mathbf{h}^2] - E[\mathbf{h}]^2` (clamped for std)
    * - softmax
      - running maximum :math:`\mathbf{m}` of :math:`t\mathbf{h}`,
        :math:`\mathbf{z} = \sum_i e^{t\mathbf{h}_i - \mathbf{m}}`,
        :math:`\mathbf{w} = \sum_i e^{t\mathbf{h}_i - \mathbf{m}}
        \mathbf{h}_i`
      - :math:`\mathbf{w} / (\mathbf{z} + 10^{-16})`
    * - powermean
      - :math:`\sum_i \mathrm{clamp}(\mathbf{h}_i)^p`, :math:`n`
      - as PyG

Each state is a :class:`StreamPart` declared for its aggregation classes
(:func:`~torch_geometric_deepsets.capabilities.declare_streaming`);
the poolings that cannot stream are declared with their reason.
"""
import math
from typing import Any, Dict, List, Optional, Union

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
    MultiAggregation,
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
from torch_geometric_deepsets._kernels.extremes import (
    count_hits,
    hits,
    scatter_extreme,
    split_ties,
)
from torch_geometric_deepsets._kernels.weighted import nonzero
from torch_geometric_deepsets.capabilities import (
    ATTENTION,
    SEQUENCES,
    SORTS,
    declare_not_streamable,
    declare_streaming,
    streamable_names,
    streaming_part,
    streaming_refusal,
)

#: The dtype of the state: the sums of 10^8 float32 rows kept in float32
#: would drift far beyond float32 rounding, and the state is small.
STATE_DTYPE = torch.float64

declare_not_streamable(SORTS, MedianAggregation, QuantileAggregation,
                       SortAggregation)
declare_not_streamable(SEQUENCES, LSTMAggregation, GRUAggregation)
declare_not_streamable(ATTENTION, SetTransformerAggregation,
                       GraphMultisetTransformer, PatchTransformerAggregation)
declare_not_streamable('it works on the whole padded (or sorted) set at once',
                       MLPAggregation, LCMAggregation)


def all_reduce(tensor: Tensor, op: Any, group: Any) -> None:
    r"""Combines :obj:`tensor` across the processes of :obj:`group`."""
    torch.distributed.all_reduce(tensor, op=op, group=group)


def _rescale(old_max: Tensor, new_max: Tensor) -> Tensor:
    r""":math:`e^{m_{old} - m_{new}}`, 0 where nothing was seen yet
    (:math:`m_{old} = -\infty`, which would give NaN for an unseen set)."""
    factor = torch.exp(old_max - new_max)
    return torch.where(torch.isinf(old_max) & (old_max < 0),
                       torch.zeros_like(factor), factor)


def _divisor(count: Tensor, like: Tensor) -> Tensor:
    r"""The divisor of a mean: the set size or total weight, 1 where it is
    0 (the sum is 0 there too)."""
    return nonzero(count).to(like.dtype).unsqueeze(-1)


class StreamPart:
    r"""The streamed state of one decomposable pooling :obj:`aggr`.

    A subclass names its per-set tensors in :attr:`fills` (name and
    starting value; the first :attr:`num_sums` are summed statistics) and
    writes :meth:`rows` and :meth:`finish`; a pooling that is not a plain
    sum of row terms (a running extreme, an online softmax) also overrides
    :meth:`update` and :meth:`sync`. Declare it for its aggregation classes
    with :func:`~torch_geometric_deepsets.aggr.declare_streaming`.

    Args:
        aggr (Aggregation): The aggregation whose state this is.
    """
    #: The per-set tensors of the state: name and starting value.
    fills: Dict[str, float] = {}
    #: How many of the state's tensors (the first ones) are summed
    #: statistics.
    num_sums = 1

    def __init__(self, aggr: Aggregation) -> None:
        self.aggr = aggr

    def update(self, state: Dict[str, Tensor], h: Tensor, index: Tensor,
               num_sets: int, weight: Optional[Tensor] = None) -> None:
        r"""Adds the rows :obj:`h` of the sets :obj:`index` (weighted by
        :obj:`weight`, :math:`[n, 1]`, where given) to :obj:`state` (no
        autograd): by default the per-set sums of :meth:`terms`."""
        terms = self.terms(state, h, index, weight)
        for name, rows in zip(self.fills, terms):
            state[name] += segment_sum(rows, index, None, num_sets).to(
                state[name].dtype)

    def terms(self, state: Dict[str, Tensor], h: Tensor, index: Tensor,
              weight: Optional[Tensor] = None) -> List[Tensor]:
        r"""Each row's term of every summed statistic: :meth:`rows`, times
        the row's weight where given (a row of weight :math:`k` counts as
        :math:`k` copies of it)."""
        rows = self.rows(state, h, index)
        return rows if weight is None else [weight * r for r in rows]

    def sync(self, state: Dict[str, Tensor], group: Any) -> None:
        r"""Combines :obj:`state` across the processes of :obj:`group`: by
        default a sum of every tensor."""
        for name in self.fills:
            all_reduce(state[name], torch.distributed.ReduceOp.SUM, group)

    def sums(self, state: Dict[str, Tensor], dtype: torch.dtype
             ) -> List[Tensor]:
        r"""The summed statistics in :obj:`dtype`, whose gradients the
        second pass of :func:`~torch_geometric_deepsets.stream_encode`
        sends back to the rows."""
        return [state[name].to(dtype)
                for name in list(self.fills)[:self.num_sums]]

    def rows(self, state: Dict[str, Tensor], h: Tensor,
             index: Tensor) -> List[Tensor]:
        r"""Each row's term of every summed statistic (differentiable in
        :obj:`h`)."""
        raise NotImplementedError

    def finish(self, sums: List[Tensor], state: Dict[str, Tensor],
               count: Tensor) -> Tensor:
        r"""The pooled rows from the summed statistics :obj:`sums` and the
        set sizes :obj:`count` (differentiable in :obj:`sums`)."""
        raise NotImplementedError


@declare_streaming(SumAggregation, MeanAggregation)
class SumPart(StreamPart):
    fills = {'sum': 0.0}

    def rows(self, state, h, index):
        return [h]

    def finish(self, sums, state, count):
        if isinstance(self.aggr, MeanAggregation):
            return sums[0] / _divisor(count, sums[0])
        return sums[0]


@declare_streaming(MaxAggregation, MinAggregation)
class ExtremePart(StreamPart):
    r"""Max or min: the running extreme of every (set, feature) pair and
    how many rows hold it, so that the second pass splits the gradient
    between tied rows as the whole-set path does
    (:mod:`torch_geometric_deepsets._kernels.extremes`)."""
    fills = {'value': 0.0, 'ties': 0.0}

    def __init__(self, aggr: Aggregation) -> None:
        super().__init__(aggr)
        self.reduce = 'max' if isinstance(aggr, MaxAggregation) else 'min'
        self.fills = {'value': -math.inf if self.reduce == 'max'
                      else math.inf, 'ties': 0.0}

    def _present(self, h: Tensor, weight: Optional[Tensor]) -> Tensor:
        r""":obj:`h` with the rows of weight 0 set to the starting value,
        which never wins: the extreme is over the rows of positive weight."""
        if weight is None:
            return h
        return torch.where(weight > 0, h, torch.full_like(
            h, self.fills['value']))

    def update(self, state, h, index, num_sets, weight=None):
        h = self._present(h, weight)
        chunk = scatter_extreme(h, index, num_sets, 0, self.reduce,
                                fill=self.fills['value'])
        hit = hits(h, chunk, index, dtype=torch.float32)
        if weight is not None:  # an unseen set's fill is not a tie
            hit = hit * (weight > 0)
        ties = count_hits(hit, index, num_sets).to(STATE_DTYPE)
        chunk = chunk.to(STATE_DTYPE)
        best = (torch.maximum if self.reduce == 'max' else torch.minimum)(
            state['value'], chunk)
        state['ties'] = state['ties'] * (state['value'] == best) + \
            ties * (chunk == best)
        state['value'] = best

    def sync(self, state, group):
        best = state['value'].clone()
        op = torch.distributed.ReduceOp
        all_reduce(best, op.MAX if self.reduce == 'max' else op.MIN, group)
        state['ties'] *= state['value'] == best
        all_reduce(state['ties'], op.SUM, group)
        state['value'] = best

    def sums(self, state, dtype):
        value = state['value']
        # An empty set pools to 0, as in PyG.
        return [torch.where(state['ties'] > 0, value,
                            torch.zeros_like(value)).to(dtype)]

    def rows(self, state, h, index):
        return self.terms(state, h, index)

    def terms(self, state, h, index, weight=None):
        # Rows whose per-set sum is the extreme: each tied row (of positive
        # weight) holds its share of it, so each gets its share of the
        # set's gradient; a row's weight does not split it further (the
        # extreme of copies is the extreme).
        hit = hits(h, state['value'].to(h.dtype), index, dtype=h.dtype)
        if weight is not None:
            hit = hit * (weight > 0)
        ties = state['ties'].to(h.dtype).index_select(0, index)
        return [split_ties(hit, ties) * h]

    def finish(self, sums, state, count):
        return sums[0]


@declare_streaming(VarAggregation, StdAggregation)
class VarPart(StreamPart):
    r"""PyG's :class:`VarAggregation`: :math:`E[h^2] - E[h]^2` (and
    :class:`StdAggregation`, its clamped square root)."""
    fills = {'sum': 0.0, 'squares': 0.0}
    num_sums = 2

    def rows(self, state, h, index):
        return [h, h * h]

    def finish(self, sums, state, count):
        aggr = self.aggr
        var_aggr = aggr.var_aggr if isinstance(aggr, StdAggregation) else aggr
        mean = sums[0] / _divisor(count, sums[0])
        squares = sums[1].detach() if var_aggr.semi_grad else sums[1]
        var = squares / _divisor(count, sums[1]) - mean * mean
        if not isinstance(aggr, StdAggregation):
            return var
        out = var.clamp(min=1e-5).sqrt()
        return out.masked_fill(out <= math.sqrt(1e-5), 0.0)


@declare_streaming(SoftmaxAggregation)
class SoftmaxPart(StreamPart):
    r"""PyG's :class:`SoftmaxAggregation` as an online softmax: the running
    maximum of :math:`t\mathbf{h}` per (set, feature) (no gradient flows
    through it, as in PyG's :func:`~torch_geometric.utils.softmax`; the
    result does not depend on it) and the sums rescaled to it."""
    fills = {'denominator': 0.0, 'numerator': 0.0, 'max': -math.inf}
    num_sums = 2

    def _scaled(self, h: Tensor) -> Tensor:
        t = self.aggr.t
        if self.aggr.channels != 1:
            t = t.view(-1, self.aggr.channels)
        if not isinstance(t, (int, float)) or t != 1:
            return h * t
        return h

    def _semi(self) -> bool:
        return not self.aggr.learn and self.aggr.semi_grad

    def update(self, state, h, index, num_sets, weight=None):
        scaled = self._scaled(h)
        if weight is not None:  # the running maximum of present rows
            scaled = torch.where(weight > 0, scaled,
                                 torch.full_like(scaled, -math.inf))
        chunk = scatter_extreme(scaled, index, num_sets, 0, 'max',
                                fill=-math.inf)
        best = torch.maximum(state['max'], chunk.to(STATE_DTYPE))
        factor = _rescale(state['max'], best)
        state['max'] = best
        weights = torch.exp(scaled - best.to(h.dtype).index_select(0, index))
        if weight is not None:
            weights = torch.where(weight > 0, weight * weights,
                                  torch.zeros_like(weights))
        for name, rows in (('denominator', weights),
                           ('numerator', weights * h)):
            state[name] = state[name] * factor + segment_sum(
                rows, index, None, num_sets).to(STATE_DTYPE)

    def sync(self, state, group):
        best = state['max'].clone()
        all_reduce(best, torch.distributed.ReduceOp.MAX, group)
        factor = _rescale(state['max'], best)
        state['max'] = best
        for name in ('denominator', 'numerator'):
            state[name] *= factor
            all_reduce(state[name], torch.distributed.ReduceOp.SUM, group)

    def sums(self, state, dtype):
        return [state['denominator'].to(dtype), state['numerator'].to(dtype)]

    def rows(self, state, h, index):
        return self.terms(state, h, index)

    def terms(self, state, h, index, weight=None):
        best = state['max'].to(h.dtype).index_select(0, index)
        weights = torch.exp(self._scaled(h) - best)
        if weight is not None:  # an absent row may exceed the maximum
            weights = torch.where(weight > 0, weight * weights,
                                  torch.zeros_like(weights))
        if self._semi():
            weights = weights.detach()
        return [weights, weights * h]

    def finish(self, sums, state, count):
        denominator = sums[0].detach() if self._semi() else sums[0]
        return sums[1] / (denominator + 1e-16)


@declare_streaming(PowerMeanAggregation)
class PowerMeanPart(StreamPart):
    fills = {'sum': 0.0}

    def _p(self) -> Union[float, Tensor]:
        p = self.aggr.p
        return p.view(-1, self.aggr.channels) if self.aggr.channels != 1 \
            else p

    def _plain(self) -> bool:
        p = self.aggr.p
        return isinstance(p, (int, float)) and p == 1

    def rows(self, state, h, index):
        if self._plain():
            return [h]
        aggr = self.aggr
        return [h.clamp(min=aggr.min_value, max=aggr.max_value).pow(
            self._p())]

    def finish(self, sums, state, count):
        out = sums[0] / _divisor(count, sums[0])
        if self._plain():
            return out
        aggr = self.aggr
        return out.clamp(min=aggr.min_value, max=aggr.max_value).pow(
            1. / self._p())


def parts_of(aggr: Aggregation) -> List[StreamPart]:
    r"""The streamed states of :obj:`aggr` (one per member of a
    :class:`~torch_geometric.nn.aggr.MultiAggregation`).

    Raises:
        ValueError: naming the aggregation and why it cannot stream.
    """
    if isinstance(aggr, MultiAggregation):
        return [part for a in aggr.aggrs for part in parts_of(a)]
    part = streaming_part(aggr)
    if part is None:
        names = ', '.join(repr(n) for n in streamable_names())
        raise ValueError(f"streaming cannot pool with {type(aggr).__name__}:"
                         f" {streaming_refusal(aggr)}. Streamable poolings: "
                         f"{names}, and lists (MultiAggregation) of them")
    return [part(aggr)]
