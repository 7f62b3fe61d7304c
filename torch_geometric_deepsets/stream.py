r"""Sets bigger than memory: a set (or a batch of sets) read as a sequence of
chunks of rows, pooled exactly and trained with exact gradients in memory
that does not grow with the set.

A decomposable pooling :math:`\bigoplus` is a function of a few per-set
sufficient statistics, each a sum over the set's elements (or a running
maximum), so the rows of a set may arrive in any number of chunks, in any
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

Exact gradients come from two passes over the chunks
(:func:`stream_encode`): the first runs :math:`\phi` without autograd and
keeps the state; :math:`\rho`, the loss and autograd run on the state,
which gives the gradient of every summed statistic; the second pass, run
by :meth:`torch.Tensor.backward`, recomputes :math:`\phi` one chunk at a
time and back-propagates into it the gradient each row's term of the sums
receives (for the maximum: the set's gradient split evenly between the
rows that hold it, as the whole-set path splits it).
"""
import math
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from torch_geometric.nn import MLP
from torch_geometric.nn.aggr import (
    Aggregation,
    MaxAggregation,
    MeanAggregation,
    MinAggregation,
    MultiAggregation,
    PowerMeanAggregation,
    SoftmaxAggregation,
    StdAggregation,
    SumAggregation,
    VarAggregation,
)
from torch_geometric.utils import degree
from torch_geometric_deepsets._kernels import segment_sum
from torch_geometric_deepsets.models import DeepSetsInvariant
from torch_geometric_deepsets.models.mlp import SplitMLP
from torch_geometric_deepsets.models.phi_pool import affine_last, fused_reduce
from torch_geometric_deepsets.pool import AggrType, resolve_aggr

Chunk = Union[Tensor, Tuple[Tensor, Tensor], Any]

# Why an aggregation cannot be streamed, for the error message. ##############


def _refusal(aggr: Aggregation) -> str:
    name = type(aggr).__name__
    sorts = ('MedianAggregation', 'QuantileAggregation', 'SortAggregation',
             'FSPool')
    sequence = ('LSTMAggregation', 'GRUAggregation', 'JanossyPooling',
                'JanossyPiSGD')
    attention = ('SetTransformerAggregation', 'GraphMultisetTransformer',
                 'PatchTransformerAggregation')
    if name in sorts:
        why = ('it sorts the values of each set, which needs all of them '
               'at once; no fixed-size running summary gives it exactly')
    elif name in sequence:
        why = ('it reads a set as ordered sequences of its elements, and '
               'its result depends on all of them together')
    elif name in attention:
        why = ('its attention compares every element with the others of '
               'its set, so it needs the whole set at once')
    elif name in ('MLPAggregation', 'LCMAggregation'):
        why = 'it works on the whole padded (or sorted) set at once'
    else:
        why = ('it is not one of the poolings whose per-set state is a '
               'fixed set of sums and running maxima')
    return (f"streaming cannot pool with {name}: {why}. Streamable "
            f"poolings: 'sum', 'mean', 'max', 'min', 'var', 'std', "
            f"'softmax', 'powermean', and lists (MultiAggregation) of them")


# One decomposable pooling ####################################################


#: The dtype of the state: the sums of 10^8 float32 rows kept in float32
#: would drift far beyond float32 rounding (see _kernels.segment_sum), and
#: the state is small.
STATE_DTYPE = torch.float64


def _rescale(old_max: Tensor, new_max: Tensor) -> Tensor:
    r""":math:`e^{m_{old} - m_{new}}`, 0 where nothing was seen yet
    (:math:`m_{old} = -\infty`, which would give NaN for an unseen set)."""
    factor = torch.exp(old_max - new_max)
    return torch.where(torch.isinf(old_max) & (old_max < 0),
                       torch.zeros_like(factor), factor)


def _all_reduce(tensor: Tensor, op: Any, group: Any) -> None:
    torch.distributed.all_reduce(tensor, op=op, group=group)


class _Part:
    r"""One decomposable pooling: its per-set state (:obj:`fills`: name and
    starting value), how a chunk of rows updates it (:meth:`update`, no
    autograd), how ranks combine it (:meth:`sync`), the summed statistics
    whose gradient autograd gives (:meth:`sums`), each row's term of those
    sums (:meth:`rows`, with autograd, for the second pass), and the pooled
    rows from the sums (:meth:`finish`, with autograd)."""
    fills: Dict[str, float] = {}
    #: How many of the state's tensors (the first ones) are summed
    #: statistics.
    num_sums = 1

    def __init__(self, aggr: Aggregation) -> None:
        self.aggr = aggr

    def update(self, state: Dict[str, Tensor], h: Tensor, index: Tensor,
               num_sets: int) -> None:
        for name, rows in zip(self.fills, self.rows(state, h, index)):
            state[name] += segment_sum(rows, index, None, num_sets).to(
                state[name].dtype)

    def sync(self, state: Dict[str, Tensor], group: Any) -> None:
        for name in self.fills:
            _all_reduce(state[name], torch.distributed.ReduceOp.SUM, group)

    def sums(self, state: Dict[str, Tensor], dtype: torch.dtype
             ) -> List[Tensor]:
        return [state[name].to(dtype)
                for name in list(self.fills)[:self.num_sums]]

    def rows(self, state: Dict[str, Tensor], h: Tensor,
             index: Tensor) -> List[Tensor]:
        raise NotImplementedError

    def finish(self, sums: List[Tensor], state: Dict[str, Tensor],
               count: Tensor) -> Tensor:
        raise NotImplementedError


def _divisor(count: Tensor, like: Tensor) -> Tensor:
    return count.clamp(min=1).to(like.dtype).unsqueeze(-1)


class _Sum(_Part):
    fills = {'sum': 0.0}

    def rows(self, state, h, index):
        return [h]

    def finish(self, sums, state, count):
        if isinstance(self.aggr, MeanAggregation):
            return sums[0] / _divisor(count, sums[0])
        return sums[0]


class _Var(_Part):
    r"""PyG's :class:`VarAggregation`: :math:`E[h^2] - E[h]^2` (and
    :class:`StdAggregation`, its clamped square root)."""
    fills = {'sum': 0.0, 'squares': 0.0}
    num_sums = 2

    def rows(self, state, h, index):
        return [h, h * h]

    def finish(self, sums, state, count):
        var_aggr = getattr(self.aggr, 'var_aggr', self.aggr)
        mean = sums[0] / _divisor(count, sums[0])
        squares = sums[1].detach() if var_aggr.semi_grad else sums[1]
        var = squares / _divisor(count, sums[1]) - mean * mean
        if not isinstance(self.aggr, StdAggregation):
            return var
        out = var.clamp(min=1e-5).sqrt()
        return out.masked_fill(out <= math.sqrt(1e-5), 0.0)


class _PowerMean(_Part):
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


def _scatter_extreme(h: Tensor, index: Tensor, num_sets: int,
                     reduce: str) -> Tensor:
    r"""Per-set maximum (:obj:`"amax"`) or minimum (:obj:`"amin"`) of the
    rows of :obj:`h`, :math:`\mp\infty` for a set without rows."""
    fill = -math.inf if reduce == 'amax' else math.inf
    out = h.new_full((num_sets, h.size(1)), fill)
    return out.scatter_reduce_(0, index.view(-1, 1).expand_as(h), h,
                               reduce=reduce, include_self=True)


class _Extreme(_Part):
    r"""Max or min: the running extreme of every (set, feature) pair and
    how many rows hold it, so that the second pass splits the gradient
    between tied rows as the whole-set path does."""
    fills = {'value': 0.0, 'ties': 0.0}

    def __init__(self, aggr: Aggregation) -> None:
        super().__init__(aggr)
        self.reduce = 'amax' if isinstance(aggr, MaxAggregation) else 'amin'
        self.fills = {'value': -math.inf if self.reduce == 'amax'
                      else math.inf, 'ties': 0.0}

    def update(self, state, h, index, num_sets):
        chunk = _scatter_extreme(h, index, num_sets, self.reduce)
        hit = torch.eq(h, chunk.index_select(0, index)).to(torch.float32)
        ties = segment_sum(hit, index, None, num_sets).to(STATE_DTYPE)
        chunk = chunk.to(STATE_DTYPE)
        best = (torch.maximum if self.reduce == 'amax' else torch.minimum)(
            state['value'], chunk)
        state['ties'] = state['ties'] * (state['value'] == best) + \
            ties * (chunk == best)
        state['value'] = best

    def sync(self, state, group):
        best = state['value'].clone()
        op = torch.distributed.ReduceOp
        _all_reduce(best, op.MAX if self.reduce == 'amax' else op.MIN, group)
        state['ties'] *= state['value'] == best
        _all_reduce(state['ties'], op.SUM, group)
        state['value'] = best

    def sums(self, state, dtype):
        value = state['value']
        # An empty set pools to 0, as in PyG.
        return [torch.where(state['ties'] > 0, value,
                            torch.zeros_like(value)).to(dtype)]

    def rows(self, state, h, index):
        # Rows whose per-set sum is the extreme: each tied row holds
        # 1/ties of it, so each gets 1/ties of the set's gradient.
        value = state['value'].to(h.dtype).index_select(0, index)
        ties = state['ties'].clamp(min=1).to(h.dtype).index_select(0, index)
        share = torch.eq(h, value).to(h.dtype) / ties
        return [share * h]

    def finish(self, sums, state, count):
        return sums[0]


class _Softmax(_Part):
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

    def update(self, state, h, index, num_sets):
        scaled = self._scaled(h)
        chunk = _scatter_extreme(scaled, index, num_sets, 'amax')
        best = torch.maximum(state['max'], chunk.to(STATE_DTYPE))
        factor = _rescale(state['max'], best)
        state['max'] = best
        weights = torch.exp(scaled - best.to(h.dtype).index_select(0, index))
        for name, rows in (('denominator', weights),
                           ('numerator', weights * h)):
            state[name] = state[name] * factor + segment_sum(
                rows, index, None, num_sets).to(STATE_DTYPE)

    def sync(self, state, group):
        best = state['max'].clone()
        _all_reduce(best, torch.distributed.ReduceOp.MAX, group)
        factor = _rescale(state['max'], best)
        state['max'] = best
        for name in ('denominator', 'numerator'):
            state[name] *= factor
            _all_reduce(state[name], torch.distributed.ReduceOp.SUM, group)

    def sums(self, state, dtype):
        return [state['denominator'].to(dtype), state['numerator'].to(dtype)]

    def rows(self, state, h, index):
        best = state['max'].to(h.dtype).index_select(0, index)
        weights = torch.exp(self._scaled(h) - best)
        if self._semi():
            weights = weights.detach()
        return [weights, weights * h]

    def finish(self, sums, state, count):
        denominator = sums[0].detach() if self._semi() else sums[0]
        return sums[1] / (denominator + 1e-16)


def _parts(aggr: Aggregation) -> List[_Part]:
    if isinstance(aggr, MultiAggregation):
        return [part for a in aggr.aggrs for part in _parts(a)]
    kind = type(aggr)
    if kind in (SumAggregation, MeanAggregation):
        return [_Sum(aggr)]
    if kind in (MaxAggregation, MinAggregation):
        return [_Extreme(aggr)]
    if kind in (VarAggregation, StdAggregation):
        return [_Var(aggr)]
    if kind is SoftmaxAggregation:
        return [_Softmax(aggr)]
    if kind is PowerMeanAggregation:
        return [_PowerMean(aggr)]
    raise ValueError(_refusal(aggr))


# Element networks that can run chunk by chunk ################################


def _check_phi(phi: Optional[torch.nn.Module]) -> None:
    r"""Refuses a :math:`\phi` whose output for a row depends on the other
    rows of its call: a chunk would then change it."""
    if phi is None:
        return
    for module in phi.modules():
        if isinstance(module, MLP) and module.supports_norm_batch:
            raise ValueError(
                f"streaming cannot run 'phi' with {module.norms[0]}: it "
                f"normalises each set with statistics of the whole set, "
                f"which a chunk does not hold; use norm=None (or a "
                f"normalisation of single rows, such as layer_norm in "
                f"mode 'node')")
        if type(module).__module__.startswith('torch_geometric.nn.norm') \
                and getattr(module, 'mode', None) != 'node' \
                and type(module).__name__ != 'BatchNorm':
            raise ValueError(
                f"streaming cannot run 'phi' with {type(module).__name__}: "
                f"it normalises with statistics over many rows, which "
                f"differ between a chunk and the whole set")


def _check_batch_norm(phi: Optional[torch.nn.Module]) -> None:
    if phi is None:
        return
    for module in phi.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and \
                module.training:
            raise ValueError(
                f"streaming cannot run 'phi' with {type(module).__name__} "
                f"in training mode: it normalises with the statistics of "
                f"its input, which differ between a chunk and the whole "
                f"set; call phi.eval() on it, or drop it")


def _hidden(phi: torch.nn.Module) -> Callable[[Tensor], Tensor]:
    r"""The layers of :obj:`phi` in front of its last affine layer."""
    if isinstance(phi, SplitMLP):
        return phi.hidden
    return phi[:-1]


# Chunks ######################################################################


class Chunks:
    r"""The rows of :obj:`x` (and their set ids :obj:`batch`) as chunks of
    :obj:`chunk_size` rows, for :func:`stream_encode` and
    :class:`SetAccumulator`: iterating gives :obj:`(x_chunk, batch_chunk)`
    pairs, anew each time (both passes of :func:`stream_encode` read it).

    :obj:`x` and :obj:`batch` may be tensors or NumPy arrays, a
    :class:`numpy.memmap` of a file bigger than memory included: only one
    chunk at a time is copied into memory.

    Args:
        x (torch.Tensor or numpy.ndarray): The elements, :math:`[N, F]`.
        batch (torch.Tensor or numpy.ndarray, optional): The set id of
            every row, :math:`[N]`; all rows form set 0 if not given.
            (default: :obj:`None`)
        chunk_size (int, optional): Rows per chunk. (default: :obj:`65536`)
    """
    def __init__(self, x: Union[Tensor, np.ndarray],
                 batch: Union[Tensor, np.ndarray, None] = None,
                 chunk_size: int = 65536) -> None:
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) \
                or chunk_size < 1:
            raise ValueError(f"'chunk_size' must be a positive int (got "
                             f"{chunk_size!r})")
        if batch is not None and len(batch) != len(x):
            raise ValueError(f"'batch' must hold one set id per row of 'x' "
                             f"(got {len(batch)} ids for {len(x)} rows)")
        self.x, self.batch, self.chunk_size = x, batch, chunk_size

    def __len__(self) -> int:
        return -(-len(self.x) // self.chunk_size)

    def __iter__(self) -> Iterator[Tuple[Tensor, Optional[Tensor]]]:
        for start in range(0, len(self.x), self.chunk_size):
            stop = start + self.chunk_size
            batch = None if self.batch is None else \
                _tensor(self.batch[start:stop])
            yield _tensor(self.x[start:stop]), batch

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(rows={len(self.x)}, '
                f'chunk_size={self.chunk_size})')


def _tensor(rows: Union[Tensor, np.ndarray]) -> Tensor:
    if isinstance(rows, Tensor):
        return rows
    # A copy: a memmap's pages are read once and the chunk is owned memory.
    return torch.from_numpy(np.array(rows))


def _split(chunk: Chunk) -> Tuple[Tensor, Optional[Tensor]]:
    r"""A chunk as :obj:`(x, batch)`: a tensor (all rows in set 0), an
    :obj:`(x, batch)` pair (as a :class:`~torch.utils.data.DataLoader` over
    a :class:`~torch.utils.data.TensorDataset` gives it), or an object with
    :obj:`x` and :obj:`batch` attributes (a PyG :class:`Batch`)."""
    if isinstance(chunk, Tensor):
        return chunk, None
    if isinstance(chunk, (tuple, list)) and len(chunk) in (1, 2):
        return chunk[0], chunk[1] if len(chunk) == 2 else None
    if hasattr(chunk, 'x') and hasattr(chunk, 'batch'):
        return chunk.x, chunk.batch
    raise TypeError(f"every chunk must be a tensor of rows, an (x, batch) "
                    f"pair or an object with 'x' and 'batch' (got "
                    f"{type(chunk).__name__})")


# The accumulator #############################################################


class SetAccumulator:
    r"""Pools sets whose rows arrive in chunks, with the sufficient
    statistics of a decomposable pooling as its only state, as
    :mod:`torchmetrics` metrics accumulate: :meth:`update` with every chunk,
    then :meth:`compute`:

    .. math::
        \mathbf{p}_s = \bigoplus_{i \,:\, b_i = s} \phi(\mathbf{x}_i)

    equals :obj:`pool(phi(x), batch, dim_size=dim_size, aggr=aggr)` of the
    whole set (or the pooled rows of a
    :class:`~torch_geometric_deepsets.DeepSetsInvariant` with this
    :obj:`phi` and :obj:`aggr`) up to floating-point rounding, for any
    chunking and any order of the rows, empty sets included. The state
    takes :math:`O(B F)` memory for :math:`B` sets of :math:`F` features,
    however many rows there are. For sum and mean pooling after a
    :math:`\phi` that ends in an affine layer, the state holds the input of
    that layer, as the model does (pooling in front of the layer).

    No autograd runs here: to train through a streamed set use
    :func:`stream_encode`.

    Args:
        aggr (str or Aggregation or list, optional): A decomposable pooling:
            :obj:`"sum"`, :obj:`"mean"`, :obj:`"max"`, :obj:`"min"`,
            :obj:`"var"`, :obj:`"std"`, :obj:`"softmax"`,
            :obj:`"powermean"` (their PyG aggregations with any arguments),
            or a list of them; others raise a :class:`ValueError` saying
            why. (default: :obj:`"sum"`)
        phi (torch.nn.Module, optional): An element network applied to every
            row first; it must treat rows independently (normalisations over
            rows are refused). (default: :obj:`None`)
        dim_size (int, optional): The number of sets :math:`B`; if not
            given, one more than the largest set id seen.
            (default: :obj:`None`)
        aggr_kwargs (dict, optional): Arguments of a string :obj:`aggr`.
            (default: :obj:`None`)
    """
    def __init__(self, aggr: AggrType = 'sum',
                 phi: Optional[torch.nn.Module] = None,
                 dim_size: Optional[int] = None,
                 aggr_kwargs: Optional[Dict[str, Any]] = None) -> None:
        if dim_size is not None and (not isinstance(dim_size, int) or
                                     isinstance(dim_size, bool) or
                                     dim_size < 0):
            raise ValueError(f"'dim_size' must be a non-negative int (got "
                             f"{dim_size!r})")
        self.aggr = aggr if isinstance(aggr, Aggregation) else \
            resolve_aggr(aggr, aggr_kwargs)
        self.parts = _parts(self.aggr)
        _check_phi(phi)
        self.phi = phi
        self.reduce = fused_reduce(phi, self.aggr) if phi is not None \
            else None
        self.lin = affine_last(phi) if self.reduce is not None else None
        self.features = _hidden(phi) if self.lin is not None else phi
        self.dim_size = dim_size
        self.reset()

    def reset(self) -> None:
        r"""Forgets every row seen."""
        self.num_sets = self.dim_size or 0
        self.count: Optional[Tensor] = None
        self.states: Optional[List[Dict[str, Tensor]]] = None
        self.dtype: Optional[torch.dtype] = None

    def element_rows(self, x: Tensor) -> Tensor:
        r"""The rows the state sums over: :math:`\phi(\mathbf{x})`, or the
        input of :math:`\phi`'s last affine layer where pooling moves in
        front of it."""
        _check_batch_norm(self.phi)
        return x if self.features is None else self.features(x)

    def _chunk(self, x: Tensor, batch: Optional[Tensor]
               ) -> Tuple[Tensor, Tensor]:
        r"""The chunk checked, on the device of the parameters (chunks read
        from disk arrive on the CPU), with the set id of every row."""
        device = self._param_device()
        if isinstance(x, Tensor) and device is not None:
            x = x.to(device, non_blocking=True)
        return x, self._index(x, batch)

    def _index(self, x: Tensor, batch: Optional[Tensor]) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2:
            got = tuple(x.shape) if isinstance(x, Tensor) else \
                type(x).__name__
            raise ValueError(f"a chunk's 'x' must be a 2-D tensor [rows, "
                             f"features] (got {got})")
        if batch is None:
            self._grow(1)
            return torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        if not isinstance(batch, Tensor) or batch.dim() != 1 or \
                batch.numel() != x.size(0) or batch.is_floating_point():
            shape = tuple(batch.shape) if isinstance(batch, Tensor) else \
                type(batch).__name__
            raise ValueError(f"a chunk's 'batch' must be a 1-D integer "
                             f"tensor with one set id per row of 'x' (got "
                             f"{shape} for {x.size(0)} rows)")
        batch = batch.to(device=x.device, dtype=torch.long)
        if batch.numel() > 0:
            low, high = int(batch.min()), int(batch.max())
            if low < 0:
                raise ValueError(f"set ids in 'batch' must be non-negative "
                                 f"(got {low})")
            if self.dim_size is not None and high >= self.dim_size:
                raise ValueError(f"set id {high} in 'batch' is out of range "
                                 f"for dim_size={self.dim_size}")
            self._grow(high + 1)
        return batch

    def _grow(self, num_sets: int) -> None:
        if num_sets <= self.num_sets:
            return
        extra = num_sets - self.num_sets
        self.num_sets = num_sets
        if self.states is None:
            return
        self.count = torch.cat([self.count, self.count.new_zeros(extra)])
        for part, state in zip(self.parts, self.states):
            for name, fill in part.fills.items():
                tensor = state[name]
                state[name] = torch.cat([tensor, tensor.new_full(
                    (extra, ) + tensor.shape[1:], fill)])

    def _start(self, width: int, dtype: torch.dtype,
               device: torch.device) -> None:
        self.dtype = dtype
        self.count = torch.zeros(self.num_sets, dtype=STATE_DTYPE,
                                 device=device)
        self.states = [{
            name: torch.full((self.num_sets, width), fill,
                             dtype=STATE_DTYPE, device=device)
            for name, fill in part.fills.items()
        } for part in self.parts]

    @torch.no_grad()
    def update(self, x: Tensor, batch: Optional[Tensor] = None) -> None:
        r"""Adds the rows :obj:`x` (:math:`[n, F]`) of the sets
        :obj:`batch` (:math:`[n]`; set 0 if not given) to the state."""
        x, index = self._chunk(x, batch)
        h = self.element_rows(x)
        if self.states is None:
            self._start(h.size(-1), h.dtype, h.device)
        elif h.size(-1) != self._width():
            raise ValueError(f"every chunk must give rows of the same width "
                             f"(got {h.size(-1)} after {self._width()})")
        for part, state in zip(self.parts, self.states):
            part.update(state, h, index, self.num_sets)
        self.count += degree(index, self.num_sets, dtype=STATE_DTYPE)

    def sync(self, group: Any = None) -> None:
        r"""Combines the states of all processes of :obj:`group` (all
        processes if :obj:`None`) with :func:`torch.distributed.all_reduce`,
        so that every process holds the state of all rows of all processes.
        Every process must call it; a process without rows takes part too.
        """
        dist = torch.distributed
        device = self.count.device if self.count is not None else \
            self._param_device() or torch.device('cpu')
        if dist.get_backend(group) == 'nccl':
            device = torch.device('cuda', torch.cuda.current_device())
        seen = torch.tensor([self.num_sets, -1 if self.states is None else
                             self._width()], device=device)
        _all_reduce(seen, dist.ReduceOp.MAX, group)
        num_sets, width = int(seen[0]), int(seen[1])
        if width < 0:
            raise ValueError("no process has seen a row: nothing to combine")
        self._grow(num_sets)
        if self.states is None:
            self._start(width, self._param_dtype(), device)
        _all_reduce(self.count, dist.ReduceOp.SUM, group)
        for part, state in zip(self.parts, self.states):
            part.sync(state, group)

    def _width(self) -> int:
        return next(iter(self.states[0].values())).size(-1)

    def _param_dtype(self) -> torch.dtype:
        for module in (self.phi, self.aggr):
            for param in ([] if module is None else module.parameters()):
                return param.dtype
        return torch.get_default_dtype()

    def _param_device(self) -> Optional[torch.device]:
        for module in (self.phi, self.aggr):
            for param in ([] if module is None else module.parameters()):
                return param.device
        return None

    def sums(self) -> List[Tensor]:
        r"""The summed statistics of all parts, in the rows' dtype."""
        if self.states is None:
            raise ValueError(
                "no rows were seen: the width of the pooled rows is unknown "
                "(give at least one chunk, or call sync() on every process "
                "when other processes hold the rows)")
        return [s for part, state in zip(self.parts, self.states)
                for s in part.sums(state, self.dtype)]

    def finish(self, sums: Sequence[Tensor]) -> Tensor:
        r"""The pooled rows from :meth:`sums` (differentiable in them and in
        the parameters of the pooling and of :math:`\phi`'s last layer)."""
        outs, start = [], 0
        for part, state in zip(self.parts, self.states):
            stop = start + part.num_sums
            outs.append(part.finish(list(sums[start:stop]), state,
                                    self.count))
            start = stop
        out = self.aggr.combine(outs) if isinstance(
            self.aggr, MultiAggregation) else outs[0]
        if self.lin is None:
            return out
        # Pooling in front of phi's last affine layer, as the model does:
        # sum: S W^T + n b; mean: P W^T + [n > 0] b (0 for an empty set).
        out = F.linear(out, self.lin.weight)
        if self.lin.bias is not None:
            weight = self.count if self.reduce == 'sum' else \
                self.count.clamp(max=1)
            out = out + weight.to(out.dtype).unsqueeze(-1) * self.lin.bias
        return out

    @torch.no_grad()
    def compute(self) -> Tensor:
        r"""The pooled rows of the sets, :math:`[B, F']`."""
        return self.finish(self.sums())

    def replay_parameters(self) -> List[torch.nn.Parameter]:
        r"""The parameters the second pass of :func:`stream_encode` gives
        gradients to: those of the rows' network (:math:`\phi`, without its
        last affine layer where pooling moves in front of it) and of the
        pooling's row terms."""
        skip = set() if self.lin is None else {
            id(p) for p in self.lin.parameters()}
        found: Dict[int, torch.nn.Parameter] = {}
        for module in (self.phi, self.aggr):
            for param in ([] if module is None else module.parameters()):
                if param.requires_grad and id(param) not in skip:
                    found.setdefault(id(param), param)
        return list(found.values())

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(aggr={self.aggr}, '
                f'num_sets={self.num_sets})')


# Exact gradients: the second pass ############################################

class _RngState:
    r"""The random-number state at the start of the first pass, restored
    for the second, so that dropout in :math:`\phi` draws the same masks
    (as :func:`torch.utils.checkpoint.checkpoint` does)."""
    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() \
            if torch.cuda.is_initialized() else None

    def restored(self) -> Any:
        devices = list(range(len(self.cuda))) if self.cuda else []
        fork = torch.random.fork_rng(devices=devices)

        class _Restore:
            def __enter__(inner):
                fork.__enter__()
                torch.set_rng_state(self.cpu)
                if self.cuda:
                    torch.cuda.set_rng_state_all(self.cuda)

            def __exit__(inner, *exc):
                return fork.__exit__(*exc)

        return _Restore()


class _Replay:
    r"""What the second pass needs: the accumulator, the chunks again, the
    random state and the process group."""
    def __init__(self, acc: SetAccumulator, chunks: Iterable[Chunk],
                 rng: _RngState, params: List[torch.nn.Parameter],
                 group: Any, distributed: bool) -> None:
        self.acc, self.chunks, self.rng = acc, chunks, rng
        self.params, self.group, self.distributed = params, group, distributed

    def backward(self, grads: Sequence[Optional[Tensor]]) -> List[Tensor]:
        acc = self.acc
        totals = [torch.zeros_like(p) for p in self.params]
        with self.rng.restored(), torch.enable_grad():
            for chunk in self.chunks:
                x, batch = _split(chunk)
                x, index = acc._chunk(x, batch)
                h = acc.element_rows(x)
                rows, outs, k = [], [], 0
                for part, state in zip(acc.parts, acc.states):
                    terms = part.rows(state, h, index)
                    for term in terms:
                        grad = grads[k]
                        k += 1
                        if grad is None or not term.requires_grad:
                            continue
                        rows.append(term)
                        outs.append(grad.index_select(0, index).to(
                            term.dtype))
                if not rows:
                    continue
                got = torch.autograd.grad(rows, self.params, outs,
                                          allow_unused=True)
                for total, g in zip(totals, got):
                    if g is not None:
                        total += g
        if self.distributed:
            # Each process back-propagated its own rows: the gradient of
            # the whole set is the sum over processes.
            for total in totals:
                _all_reduce(total, torch.distributed.ReduceOp.SUM,
                            self.group)
        return totals


class _StreamedSums(torch.autograd.Function):
    r"""The summed statistics of the first pass as a function of the
    parameters of the rows' network; its backward pass is the second pass
    over the chunks."""
    @staticmethod
    def forward(ctx, replay: _Replay, *params: Tensor) -> Tuple[Tensor, ...]:
        ctx.replay = replay
        # Copies: in float64 the sums are the state tensors themselves.
        return tuple(s.clone() for s in replay.acc.sums())

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: Tensor) -> Tuple[Optional[Tensor], ...]:
        return (None, *ctx.replay.backward(grads))


def stream_encode(model: DeepSetsInvariant, chunks: Iterable[Chunk],
                  dim_size: Optional[int] = None, distributed: bool = False,
                  group: Any = None) -> Tensor:
    r"""The output of a :class:`~torch_geometric_deepsets.DeepSetsInvariant`
    on sets whose rows arrive in :obj:`chunks`, with the memory of one chunk
    plus a small per-set state: :obj:`model(x, batch, dim_size=dim_size)`
    of all rows up to floating-point rounding, for any chunking and any
    order of the rows.

    Where autograd is on and a parameter needs a gradient, the result is
    differentiable with the exact gradients of the whole-set call:
    :meth:`~torch.Tensor.backward` of a loss reads :obj:`chunks` a second
    time, recomputing :math:`\phi` one chunk at a time (so :obj:`chunks`
    must give the same rows again: a list, a :class:`Chunks`, a
    :class:`~torch.utils.data.DataLoader` without shuffling; not a
    generator). Dropout in :math:`\phi` draws the same masks in both
    passes. No gradient flows into the chunks themselves.

    Across processes (:obj:`distributed=True`), each process passes the
    rows it holds, with the global set ids and :obj:`dim_size`; the states
    are combined with :func:`torch.distributed.all_reduce`, every process
    gets the output of all rows, and after :meth:`~torch.Tensor.backward`
    every process holds the gradient of one process holding all rows. Do
    not wrap the model in
    :class:`~torch.nn.parallel.DistributedDataParallel`, which would
    average those gradients once more.

    Args:
        model (DeepSetsInvariant): The model; its pooling must be
            decomposable (see :class:`SetAccumulator`).
        chunks (Iterable): Chunks of rows: tensors (all rows in set 0),
            :obj:`(x, batch)` pairs, or objects with :obj:`x` and
            :obj:`batch` (PyG batches).
        dim_size (int, optional): The number of sets :math:`B`.
            (default: :obj:`None`: one more than the largest set id)
        distributed (bool, optional): Whether to combine the rows of all
            processes of :obj:`group`. (default: :obj:`False`)
        group (ProcessGroup, optional): The process group.
            (default: :obj:`None`: all processes)

    Shapes:
        - **input:** chunks of :math:`(n_k, F_{in})` rows with set ids
          :math:`(n_k)`
        - **output:** :math:`(B, F_{out})`
    """
    if not isinstance(model, DeepSetsInvariant):
        raise TypeError(f"'model' must be a DeepSetsInvariant (got "
                        f"{type(model).__name__}); for other pooled "
                        f"networks use SetAccumulator")
    acc = SetAccumulator(model.aggr_module, phi=model.phi, dim_size=dim_size)
    train = torch.is_grad_enabled()
    if train and iter(chunks) is chunks:
        raise TypeError(
            "'chunks' is an iterator, which can be read once, but training "
            "reads the chunks twice (the second time in backward()); pass "
            "a list, a Chunks or a DataLoader, or run under torch.no_grad()")
    rng = _RngState()
    for chunk in chunks:
        acc.update(*_split(chunk))
    if distributed:
        acc.sync(group)
    params = acc.replay_parameters() if train else []
    if params:
        replay = _Replay(acc, chunks, rng, params, group, distributed)
        sums = _StreamedSums.apply(replay, *params)
    else:
        sums = acc.sums()
    return model.rho(acc.finish(sums))
