r"""Functional helpers shared by every layer and model: validating the
grouping of rows into sets, resolving pooling operators and moving between
element level and set level.

A batch of sets is stored like a PyG mini-batch of edgeless graphs: the
elements of all sets are the rows of one matrix :obj:`x` of shape
:math:`[N, F]`, and either a :obj:`batch` vector of shape :math:`[N]` (the set
of each row, in any order) or a :obj:`ptr` vector of shape :math:`[B + 1]`
(the row boundaries of sorted sets) says which rows form which set.
"""
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor

import torch_geometric
from torch_geometric.index import ptr2index
from torch_geometric.nn.aggr import (
    Aggregation,
    DegreeScalerAggregation,
    EquilibriumAggregation,
    GraphMultisetTransformer,
    MaxAggregation,
    MeanAggregation,
    MultiAggregation,
    QuantileAggregation,
    Set2Set,
    SetTransformerAggregation,
    SortAggregation,
    SumAggregation,
)
from torch_geometric.nn.resolver import aggregation_resolver
from torch_geometric_deepsets._kernels import (
    gather_sets,
    segment_pool,
    set_counts,
)

AggrType = Union[str, List[str], Aggregation, List[Aggregation], None]


def _value_checks_enabled(tensor: Tensor) -> bool:
    r"""Whether checks that read tensor *values* may run.

    Reading a value of a CUDA tensor synchronises the device, so such checks
    only run under :class:`torch_geometric.debug`; on the CPU they cost no
    sync and always run. Compiled graphs never run them (they would break the
    graph on data-dependent control flow).
    """
    if torch.compiler.is_compiling():
        return False
    return tensor.device.type == 'cpu' or torch_geometric.is_debug_enabled()


def _check_integer(name: str, value: Tensor) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor "
                        f"(got {type(value).__name__})")
    if value.dtype.is_floating_point or value.dtype.is_complex or \
            value.dtype == torch.bool:
        raise TypeError(f"'{name}' must be an integer tensor "
                        f"(got dtype {value.dtype})")
    if value.dim() != 1:
        raise ValueError(f"'{name}' must be one-dimensional "
                         f"(got shape {tuple(value.shape)})")


def check_x(x: Tensor, name: str = 'x',
            channels: Optional[int] = None) -> None:
    r"""Raises if :obj:`x` is not a two-dimensional tensor (of
    :obj:`channels` columns, where given). Any dtype passes: integer tokens
    are valid elements for a :math:`\phi` that starts with an embedding."""
    if not isinstance(x, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor "
                        f"(got {type(x).__name__})")
    if x.dim() != 2:
        raise ValueError(f"'{name}' must be two-dimensional [num_elements, "
                         f"num_features] (got shape {tuple(x.shape)})")
    if channels is not None and channels > 0 and x.size(1) != channels:
        raise ValueError(f"'{name}' has {x.size(1)} features per element but "
                         f"the model expects {channels}")


def check_sets(
    x: Tensor,
    batch: Optional[Tensor] = None,
    ptr: Optional[Tensor] = None,
    dim_size: Optional[int] = None,
    batch_name: str = 'batch',
) -> Tuple[Optional[Tensor], Optional[Tensor], int]:
    r"""Validates the grouping of the rows of :obj:`x` into sets and returns
    :obj:`(batch, ptr, dim_size)` with :obj:`dim_size` (the number of sets)
    always filled in.

    With neither :obj:`batch` nor :obj:`ptr`, all rows form one set.
    Shape and dtype problems always raise. Problems that can only be seen in
    the values (:obj:`batch` out of range, :obj:`ptr` not non-decreasing or
    not ending at the number of rows, :obj:`batch` disagreeing with
    :obj:`ptr`) raise on the CPU always and on other devices under
    :class:`torch_geometric.debug`, since reading values there forces a sync.

    Raises:
        TypeError: if :obj:`batch` or :obj:`ptr` is not an integer tensor.
        ValueError: if sizes or values are inconsistent; the message names the
            argument and the sizes involved.
    """
    num_rows = x.size(0)
    if dim_size is not None and (isinstance(dim_size, bool)
                                 or not isinstance(dim_size, int)):
        raise TypeError(f"'dim_size' must be an int "
                        f"(got {type(dim_size).__name__})")
    if dim_size is not None and dim_size < 0:
        raise ValueError(f"'dim_size' must be non-negative (got {dim_size})")

    if batch is not None:
        _check_integer(batch_name, batch)
        if batch.numel() != num_rows:
            raise ValueError(f"'{batch_name}' has {batch.numel()} entries but "
                             f"'x' has {num_rows} rows; they must match")
        if batch.device != x.device:
            raise ValueError(f"'{batch_name}' is on {batch.device} but 'x' is "
                             f"on {x.device}")

    if ptr is not None:
        _check_integer('ptr', ptr)
        if ptr.numel() < 1:
            raise ValueError("'ptr' must hold at least one entry "
                             "(ptr[0] = 0)")
        num_sets = ptr.numel() - 1
        if dim_size is not None and dim_size != num_sets:
            raise ValueError(f"'dim_size' is {dim_size} but 'ptr' has "
                             f"{ptr.numel()} entries, i.e. {num_sets} sets")
        dim_size = num_sets
        if ptr.device != x.device:
            raise ValueError(f"'ptr' is on {ptr.device} but 'x' is on "
                             f"{x.device}")
        if _value_checks_enabled(ptr):
            first, last = int(ptr[0]), int(ptr[-1])
            if first != 0 or last != num_rows:
                raise ValueError(f"'ptr' must start at 0 and end at the "
                                 f"number of rows of 'x' ({num_rows}) "
                                 f"(got ptr[0] = {first}, ptr[-1] = {last})")
            if num_sets > 0 and bool((ptr[1:] < ptr[:-1]).any()):
                raise ValueError("'ptr' must be non-decreasing (got "
                                 f"{ptr.tolist() if num_sets < 20 else ptr})")
            if batch is not None and not torch.equal(
                    batch, ptr2index(ptr, output_size=num_rows)):
                raise ValueError(f"'{batch_name}' and 'ptr' describe "
                                 f"different sets; pass only one of them")

    if batch is not None:
        if dim_size is None:
            # Same as PyG's aggregations: the number of sets is read off the
            # largest id (a device sync; pass `dim_size` to avoid it).
            dim_size = int(batch.max()) + 1 if batch.numel() > 0 else 0
        elif _value_checks_enabled(batch) and batch.numel() > 0:
            lo, hi = int(batch.min()), int(batch.max())
            if lo < 0 or hi >= dim_size:
                raise ValueError(f"'{batch_name}' holds set ids in "
                                 f"[{lo}, {hi}] but 'dim_size' is {dim_size}; "
                                 f"ids must lie in [0, {dim_size - 1}]")
    elif ptr is None:
        if dim_size is not None and dim_size != 1:
            raise ValueError(f"Without 'batch' or 'ptr' all rows form one "
                             f"set, but 'dim_size' is {dim_size}")
        dim_size = 1

    assert dim_size is not None
    return batch, ptr, dim_size


def element_index(x: Tensor, batch: Optional[Tensor], ptr: Optional[Tensor],
                  ) -> Tensor:
    r"""The set id of every row, from :obj:`batch` or :obj:`ptr` (all zeros
    when both are :obj:`None`)."""
    if batch is not None:
        return batch
    if ptr is not None:
        return ptr2index(ptr, output_size=x.size(0))
    return torch.zeros(x.size(0), dtype=torch.long, device=x.device)


def set_index(x: Tensor, batch: Optional[Tensor], ptr: Optional[Tensor],
              dim_size: Optional[int]) -> Tuple[Tensor, int]:
    r"""The set id of every row and the number of sets, for a forward pass.

    In eager mode :func:`check_sets` has filled :obj:`dim_size` in already;
    under TorchScript, which skips the checks, it is found here the same
    way: from :obj:`ptr` (trailing empty sets included), else from the
    largest id in :obj:`batch` (0 sets without rows), else one set."""
    index = element_index(x, batch, ptr)
    if dim_size is None:
        if ptr is not None:
            dim_size = ptr.numel() - 1
        elif batch is not None:
            dim_size = int(batch.max()) + 1 if batch.numel() > 0 else 0
        else:
            dim_size = 1
    return index, dim_size


def resolve_aggr(aggr: AggrType,
                 aggr_kwargs: Optional[Dict[str, Any]] = None) -> Aggregation:
    r"""Turns :obj:`aggr` into a :class:`torch_geometric.nn.aggr.Aggregation`.

    Accepts any string :func:`torch_geometric.nn.resolver.aggregation_resolver`
    knows (:obj:`"sum"`, :obj:`"mean"`, :obj:`"max"`, :obj:`"softmax"`, ...),
    an :class:`Aggregation` instance, or a list of either (a
    :class:`~torch_geometric.nn.aggr.MultiAggregation` that concatenates).
    """
    if aggr is None:
        raise ValueError("'aggr' must be given (e.g. 'sum', 'mean', 'max')")
    if isinstance(aggr, (list, tuple)) and len(aggr) == 0:
        raise ValueError("'aggr' must not be an empty list")
    if not isinstance(aggr, (str, list, tuple, Aggregation)):
        raise TypeError(f"'aggr' must be a string, an Aggregation or a list "
                        f"of them (got {type(aggr).__name__})")
    try:
        return aggregation_resolver(aggr, **(aggr_kwargs or {}))
    except ValueError as e:
        raise ValueError(f"Unknown 'aggr' {aggr!r}: {e}") from e


def pooled_channels(aggr: Aggregation, in_channels: int) -> int:
    r"""Feature width after pooling :obj:`in_channels`-wide rows with
    :obj:`aggr`: most aggregations keep it, while concatenating
    multi-aggregations, degree scalers,
    :class:`~torch_geometric.nn.aggr.Set2Set`,
    :class:`~torch_geometric.nn.aggr.SortAggregation`, several quantiles
    and :class:`~torch_geometric.nn.aggr.EquilibriumAggregation` change it."""
    if isinstance(aggr, MultiAggregation):
        if aggr.out_channels is not None:
            return aggr.out_channels
        widths = [pooled_channels(a, in_channels) for a in aggr.aggrs]
        return sum(widths) if aggr.mode == 'cat' else widths[0]
    if isinstance(aggr, DegreeScalerAggregation):
        return pooled_channels(aggr.aggr, in_channels) * len(aggr.scaler)
    if isinstance(aggr, Set2Set):
        return aggr.out_channels
    if isinstance(aggr, SortAggregation):
        return aggr.k * in_channels
    if isinstance(aggr, QuantileAggregation):
        return aggr.q.numel() * in_channels
    if isinstance(aggr, EquilibriumAggregation):
        return aggr.output_dim
    return in_channels


_SEGMENT_REDUCE = {
    SumAggregation: 'sum',
    MeanAggregation: 'mean',
    MaxAggregation: 'max',
}


def apply_aggr(aggr: Aggregation, x: Tensor, index: Tensor,
               ptr: Optional[Tensor], dim_size: int) -> Tensor:
    r"""Runs :obj:`aggr` on validated input, with the package's semantics
    for every aggregation: rows need not be sorted, and empty sets pool to
    zero.

    PyG's sum, mean and max go through
    :func:`~torch_geometric_deepsets._kernels.segment_pool` (same values;
    even-split max gradients, accurate long sums, see there). Other
    aggregations run as PyG defines them on the non-empty sets only, since
    several of them fail on empty
    sets (quantiles index out of range after a trailing empty set,
    :func:`~torch_geometric.utils.to_dense_batch` fails without rows), and
    with rows grouped by set where they pad sets densely.
    """
    reduce = _SEGMENT_REDUCE.get(type(aggr))
    if reduce is not None and not torch.compiler.is_compiling():
        return segment_pool(x, index, ptr, dim_size, reduce)
    if torch.compiler.is_compiling():
        return aggr(x, index, ptr=ptr, dim_size=dim_size)

    nonempty = set_counts(index, ptr, dim_size) > 0
    if x.size(0) > 0 and bool(nonempty.all()):
        if ptr is None and _needs_sorted_index(aggr):
            # The order of rows inside a set does not matter to these.
            index, perm = torch.sort(index, stable=True)
            x = x.index_select(0, perm)
        return aggr(x, index, ptr=ptr, dim_size=dim_size)

    ids = nonempty.nonzero().view(-1)
    width = pooled_channels(aggr, x.size(1))
    if ids.numel() == 0:
        return x.new_zeros(dim_size, width)
    remap = torch.full((dim_size, ), -1, dtype=index.dtype,
                       device=index.device)
    remap[ids] = torch.arange(ids.numel(), dtype=index.dtype,
                              device=index.device)
    out = apply_aggr(aggr, x, remap[index], None, ids.numel())
    return out.new_zeros(dim_size, out.size(-1)).index_copy(0, ids, out)


def _needs_sorted_index(aggr: Aggregation) -> bool:
    if isinstance(aggr, MultiAggregation):
        return any(_needs_sorted_index(a) for a in aggr.aggrs)
    # PyG's aggregations that go through `Aggregation.to_dense_batch`.
    return isinstance(aggr, (SortAggregation, GraphMultisetTransformer,
                             SetTransformerAggregation))


def pool(
    x: Tensor,
    batch: Optional[Tensor] = None,
    ptr: Optional[Tensor] = None,
    dim_size: Optional[int] = None,
    aggr: AggrType = 'sum',
) -> Tensor:
    r"""Pools the rows of :obj:`x` set by set.

    .. math::
        \mathbf{p}_s = \bigoplus_{i \,:\, b_i = s} \mathbf{x}_i

    An empty set (an id below :obj:`dim_size` that owns no row) pools to zero
    for :obj:`"sum"`, :obj:`"mean"` and :obj:`"max"`, with finite gradients.

    Args:
        x (torch.Tensor): Element features.
        batch (torch.Tensor, optional): Set id of every row.
            (default: :obj:`None`)
        ptr (torch.Tensor, optional): Row boundaries of sorted sets; an
            alternative to :obj:`batch`. (default: :obj:`None`)
        dim_size (int, optional): Number of sets :math:`B`.
            (default: :obj:`None`)
        aggr (str or Aggregation or list, optional): The pooling operator.
            (default: :obj:`"sum"`)

    Shapes:
        - **input:** :math:`(N, F)`, :math:`(N)` or :math:`(B + 1)`
        - **output:** :math:`(B, F')`
    """
    check_x(x)
    batch, ptr, dim_size = check_sets(x, batch, ptr, dim_size)
    module = aggr if isinstance(aggr, Aggregation) else resolve_aggr(aggr)
    return apply_aggr(module, x, element_index(x, batch, ptr), ptr, dim_size)


def broadcast(pooled: Tensor, x: Tensor, batch: Optional[Tensor],
              ptr: Optional[Tensor]) -> Tensor:
    r"""Copies each set's row of :obj:`pooled` to every element of the set."""
    if batch is None and ptr is None:
        return pooled.expand(x.size(0), pooled.size(-1))
    index = element_index(x, batch, ptr)
    if torch.jit.is_scripting():
        return pooled.index_select(0, index)
    else:
        if torch.compiler.is_compiling():
            return pooled.index_select(0, index)
        return gather_sets(pooled, index, ptr)


def set_sizes(x: Tensor, batch: Optional[Tensor], ptr: Optional[Tensor],
              dim_size: int) -> Tensor:
    r"""Number of elements of each set, shape :math:`[B]`."""
    if batch is None and ptr is None:
        return torch.full((1, ), x.size(0), dtype=torch.long, device=x.device)
    return set_counts(element_index(x, batch, ptr), ptr, dim_size)
