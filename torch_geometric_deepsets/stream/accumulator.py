r"""Pooling sets whose rows arrive in chunks: :class:`SetAccumulator` keeps
the sufficient statistics of a decomposable pooling
(:mod:`~torch_geometric_deepsets.stream.parts`) as its only state."""
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric.nn.aggr import Aggregation, MultiAggregation
from torch_geometric.utils import degree
from torch_geometric_deepsets._kernels import segment_sum
from torch_geometric_deepsets._kernels.affine import bias_weight
from torch_geometric_deepsets.checks import (
    check_dim_size,
    check_id_range,
    check_set_ids,
    check_weight,
    check_x,
    id_range,
)
from torch_geometric_deepsets.grouping import element_weights
from torch_geometric_deepsets.models.phi_pool import affine_last, fused_reduce
from torch_geometric_deepsets.models.widths import in_channels_of
from torch_geometric_deepsets.pool import AggrType, resolve_aggr
from torch_geometric_deepsets.stream.elements import (
    check_batch_norm,
    check_phi,
    hidden_layers,
)
from torch_geometric_deepsets.stream.parts import (
    STATE_DTYPE,
    all_reduce,
    parts_of,
)


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
        if dim_size is not None:
            check_dim_size(dim_size)
        self.aggr = aggr if isinstance(aggr, Aggregation) else \
            resolve_aggr(aggr, aggr_kwargs)
        self.parts = parts_of(self.aggr)
        check_phi(phi)
        self.phi = phi
        self.reduce = fused_reduce(phi, self.aggr) if phi is not None \
            else None
        self.lin = affine_last(phi) if self.reduce is not None else None
        self.features = hidden_layers(phi) if self.lin is not None else phi
        self.dim_size = dim_size
        #: The width of a chunk's rows the element network takes, where
        #: its structure shows it (a chunk of another width is refused
        #: before it reaches the network).
        self.in_channels = None if phi is None else in_channels_of(phi)
        self.reset()

    def reset(self) -> None:
        r"""Forgets every row seen."""
        self.num_sets = self.dim_size or 0
        self.count: Optional[Tensor] = None
        self.states: Optional[List[Dict[str, Tensor]]] = None
        self.dtype: Optional[torch.dtype] = None

    # Rows ####################################################################

    def element_rows(self, x: Tensor) -> Tensor:
        r"""The rows the state sums over: :math:`\phi(\mathbf{x})`, or the
        input of :math:`\phi`'s last affine layer where pooling moves in
        front of it."""
        check_batch_norm(self.phi)
        return x if self.features is None else self.features(x)

    def rows_of(self, x: Tensor, batch: Optional[Tensor],
                weight: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        r"""The element rows of a chunk (:meth:`element_rows`, on the device
        of the parameters: chunks read from disk arrive on the CPU), the set
        id of every row, checked, the state grown to hold their sets, and
        the rows' weights as a column (:obj:`None` without weights)."""
        param = self._first_parameter()
        if isinstance(x, Tensor) and param is not None:
            x = x.to(param.device, non_blocking=True)
        index = self._ids(x, batch)
        h = self.element_rows(x)
        if weight is None:
            return h, index, None
        if isinstance(weight, Tensor):
            weight = weight.to(x.device)
        check_weight(weight, x, 0)
        return h, index, element_weights(weight, h, 0)

    def _ids(self, x: Tensor, batch: Optional[Tensor]) -> Tensor:
        width = self.in_channels
        check_x(x, channels=width if width and width > 0 else None,
                matrix=True)
        if batch is None:
            self._grow(1)
            return torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        if isinstance(batch, Tensor):
            batch = batch.to(x.device)
        check_set_ids('batch', batch, x, 0)
        batch = batch.long()
        if batch.numel() > 0:
            lo, hi = id_range(batch)
            check_id_range('batch', lo, hi, self.dim_size)
            self._grow(hi + 1)
        return batch

    # State ###################################################################

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

    def _width(self) -> int:
        return next(iter(self.states[0].values())).size(-1)

    def _parameters(self) -> Iterator[torch.nn.Parameter]:
        r"""The parameters of :math:`\phi` and of the pooling."""
        for module in (self.phi, self.aggr):
            if module is not None:
                yield from module.parameters()

    def _first_parameter(self) -> Optional[torch.nn.Parameter]:
        return next(self._parameters(), None)

    @torch.no_grad()
    def update(self, x: Tensor, batch: Optional[Tensor] = None,
               weight: Optional[Tensor] = None) -> None:
        r"""Adds the rows :obj:`x` (:math:`[n, F]`) of the sets
        :obj:`batch` (:math:`[n]`; set 0 if not given), weighted by
        :obj:`weight` (:math:`[n]`, float or integer; a row of weight
        :math:`k` counts as :math:`k` copies of it), to the state."""
        h, index, w = self.rows_of(x, batch, weight)
        if self.states is None:
            self._start(h.size(-1), h.dtype, h.device)
        elif h.size(-1) != self._width():
            raise ValueError(f"every chunk must give rows of the same width "
                             f"(got {h.size(-1)} after {self._width()})")
        for part, state in zip(self.parts, self.states):
            part.update(state, h, index, self.num_sets, w)
        if w is None:
            self.count += degree(index, self.num_sets, dtype=STATE_DTYPE)
        else:  # the total weight of every set: its size in copies
            self.count += segment_sum(w.view(-1).to(STATE_DTYPE), index,
                                      None, self.num_sets)

    def sync(self, group: Any = None) -> None:
        r"""Combines the states of all processes of :obj:`group` (all
        processes if :obj:`None`) with :func:`torch.distributed.all_reduce`,
        so that every process holds the state of all rows of all processes.
        Every process must call it; a process without rows takes part too.
        """
        dist = torch.distributed
        param = self._first_parameter()
        device = self.count.device if self.count is not None else \
            param.device if param is not None else torch.device('cpu')
        if dist.get_backend(group) == 'nccl':
            device = torch.device('cuda', torch.cuda.current_device())
        seen = torch.tensor([self.num_sets, -1 if self.states is None else
                             self._width()], device=device)
        all_reduce(seen, dist.ReduceOp.MAX, group)
        num_sets, width = int(seen[0]), int(seen[1])
        if width < 0:
            raise ValueError("no process has seen a row: nothing to combine")
        self._grow(num_sets)
        if self.states is None:
            dtype = param.dtype if param is not None else \
                torch.get_default_dtype()
            self._start(width, dtype, device)
        all_reduce(self.count, dist.ReduceOp.SUM, group)
        for part, state in zip(self.parts, self.states):
            part.sync(state, group)

    # Results #################################################################

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
        # Pooling in front of phi's last affine layer, as the model does.
        out = F.linear(out, self.lin.weight)
        if self.lin.bias is not None:
            weights = bias_weight(self.reduce == 'mean', self.count)
            out = out + weights.to(out.dtype).unsqueeze(-1) * self.lin.bias
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
        for param in self._parameters():
            if param.requires_grad and id(param) not in skip:
                found.setdefault(id(param), param)
        return list(found.values())

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(aggr={self.aggr}, '
                f'num_sets={self.num_sets})')
