r"""Functional helpers shared by every layer and model: the one prologue that
validates the grouping of rows into sets, the pooling operators, and moving
between element level and set level.

A batch of sets is stored like a PyG mini-batch of edgeless graphs: the
elements of all sets are the rows of one tensor :obj:`x` of shape
:math:`[*, N, F]`, and either an :obj:`index` (:obj:`batch`) vector of shape
:math:`[N]` (the set of each row, in any order) or a :obj:`ptr` vector of
shape :math:`[B + 1]` (the row boundaries of sorted sets) says which rows form
which set. Rows lie along :obj:`dim` (:obj:`-2` by default, as for PyG's
aggregations); the last dimension holds the features.
"""
import difflib
from typing import Any, Dict, List, NamedTuple, Optional, Union

import torch
from torch import Tensor

import torch_geometric
from torch_geometric.nn.aggr import (
    Aggregation,
    GraphMultisetTransformer,
    GRUAggregation,
    LCMAggregation,
    LSTMAggregation,
    MaxAggregation,
    MeanAggregation,
    MLPAggregation,
    MultiAggregation,
    PatchTransformerAggregation,
    QuantileAggregation,
    SetTransformerAggregation,
    SortAggregation,
    SumAggregation,
)
from torch_geometric.nn.resolver import aggregation_resolver
from torch_geometric_deepsets._kernels import (
    host_path,
    ptr_to_index,
    segment_pool,
    use_torch_scatter,
)

AggrType = Union[str, List[str], Aggregation, List[Aggregation], None]

# Validation ##################################################################


def value_checks_enabled(tensor: Tensor) -> bool:
    r"""Whether checks that read tensor *values* run: on the host path
    (eager CPU, see :func:`~torch_geometric_deepsets._kernels.host_path`),
    where they cost no device synchronisation, and under
    :class:`torch_geometric.debug` on other devices. Compiled graphs never
    run them: they cannot branch on data.
    """
    return host_path(tensor) or (torch_geometric.is_debug_enabled()
                                 and not torch.compiler.is_compiling())


def check_int(name: str, value: Any, minimum: int = 1,
              maximum: Optional[int] = None, lazy: bool = False) -> int:
    r"""Raises a :class:`ValueError` naming :obj:`name` unless :obj:`value`
    is an int (not a bool) in :obj:`[minimum, maximum]`, or :obj:`-1` for a
    :obj:`lazy` width (found at the first call); returns :obj:`value`."""
    ok = not isinstance(value, bool) and isinstance(value, int) and (
        (lazy and value == -1) or
        (value >= minimum and (maximum is None or value <= maximum)))
    if not ok:
        if maximum is not None:
            bound = f'an int in [{minimum}, {maximum}]'
        else:
            bound = {0: 'a non-negative int', 1: 'a positive int'}.get(
                minimum, f'an int >= {minimum}')
        hint = ', or -1 to find it at the first call' if lazy else ''
        raise ValueError(f"'{name}' must be {bound}{hint} (got {value!r})")
    return value


def _check_integer(name: str, value: Any) -> None:
    if not isinstance(value, Tensor):
        hint = ''
        if name == 'ptr' and isinstance(value, int):
            hint = ("; to give the number of sets, as in "
                    "global_add_pool(x, batch, size), pass dim_size=")
        raise TypeError(f"'{name}' must be a torch.Tensor (got "
                        f"{type(value).__name__}){hint}")
    if value.dtype.is_floating_point or value.dtype.is_complex or \
            value.dtype == torch.bool:
        raise TypeError(f"'{name}' must be an integer tensor "
                        f"(got dtype {value.dtype})")
    if value.dim() != 1:
        raise ValueError(f"'{name}' must be one-dimensional "
                         f"(got shape {tuple(value.shape)})")


def check_x(x: Any, name: str = 'x', channels: Optional[int] = None,
            dim: int = -2, any_dim: bool = False,
            matrix: bool = False) -> int:
    r"""Raises unless :obj:`x` is a tensor of at least two dimensions (two
    exactly with :obj:`matrix`) whose last one (the features) has
    :obj:`channels` entries, where given, and :obj:`dim` a dimension of it,
    other than the last unless :obj:`any_dim` (pooling alone may run along
    the last dimension, as PyG's aggregations do). Returns :obj:`dim` as a
    non-negative number."""
    if not isinstance(x, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor "
                        f"(got {type(x).__name__})")
    if x.dim() < 2:
        raise ValueError(f"'{name}' must have a feature dimension, i.e. "
                         f"shape [num_elements, num_features] or [*, "
                         f"num_elements, num_features] (got shape "
                         f"{tuple(x.shape)}); for scalar elements use "
                         f"{name}.view(-1, 1)")
    if matrix and x.dim() != 2:
        raise ValueError(f"'{name}' must be a matrix [num_elements, "
                         f"num_features] (got shape {tuple(x.shape)})")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"'dim' must be an int (got {type(dim).__name__})")
    if not -x.dim() <= dim < x.dim() or (not any_dim and
                                         dim % x.dim() == x.dim() - 1):
        raise ValueError(f"'dim' is {dim} but '{name}' has shape "
                         f"{tuple(x.shape)}: the elements lie along any "
                         f"dimension but the last, which holds the features "
                         f"(default -2)")
    if channels is not None and channels > 0 and x.size(-1) != channels:
        raise ValueError(f"'{name}' has {x.size(-1)} features per element "
                         f"but the model expects {channels}")
    return dim % x.dim()


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
    r"""The prologue of every layer and model: validates :obj:`x` and the
    grouping of its rows into sets, and resolves :obj:`(index | ptr,
    dim_size)` once, as PyG's :meth:`Aggregation.__call__` does.

    With neither :obj:`index` nor :obj:`ptr`, all rows form set 0 (an
    all-zero :obj:`index` is returned); a larger :obj:`dim_size` adds empty
    sets after it, as in PyG. With :obj:`ptr`, :obj:`index` may
    stay :obj:`None` (:func:`element_index` builds it where needed).
    :obj:`dim_size`, the number of sets, is always filled in: from
    :obj:`ptr`, else from the largest id in :obj:`index` (a device sync on
    GPUs, as in PyG; pass :obj:`dim_size` to avoid it).

    Shape and dtype problems always raise. Problems that can only be seen in
    the values (ids out of range, :obj:`ptr` decreasing or not ending at the
    number of rows, :obj:`index` disagreeing with :obj:`ptr`) raise wherever
    :func:`value_checks_enabled` says.

    Raises:
        TypeError: if an argument has the wrong type or dtype.
        ValueError: if sizes or values are inconsistent; the message names the
            argument and the sizes involved.
    """
    dim = check_x(x, channels=channels, dim=dim, any_dim=any_dim,
                  matrix=matrix)
    num_rows = x.size(dim)
    if dim_size is not None and (
            isinstance(dim_size, bool)
            or not isinstance(dim_size, (int, torch.SymInt))):
        raise TypeError(f"'dim_size' must be an int "
                        f"(got {type(dim_size).__name__})")
    if dim_size is not None and dim_size < 0:
        raise ValueError(f"'dim_size' must be non-negative (got {dim_size})")

    if index is not None:
        _check_integer(index_name, index)
        if index.numel() != num_rows:
            raise ValueError(f"'{index_name}' has {index.numel()} entries but "
                             f"'x' has {num_rows} rows along dim {dim}; they "
                             f"must match")
        if index.device != x.device:
            raise ValueError(f"'{index_name}' is on {index.device} but 'x' is "
                             f"on {x.device}")

    if ptr is not None:
        _check_integer('ptr', ptr)
        if ptr.numel() < 1:
            raise ValueError("'ptr' must hold at least one entry "
                             "(ptr[0] = 0)")
        if ptr.device != x.device:
            raise ValueError(f"'ptr' is on {ptr.device} but 'x' is on "
                             f"{x.device}")
        num_sets = ptr.numel() - 1
        if dim_size is not None and dim_size != num_sets:
            raise ValueError(f"'dim_size' is {dim_size} but 'ptr' has "
                             f"{ptr.numel()} entries, i.e. {num_sets} sets")
        dim_size = num_sets
        if value_checks_enabled(ptr):
            _check_ptr_values(ptr, num_rows, index, index_name)
    elif index is not None:
        if dim_size is None:
            dim_size = int(index.max()) + 1 if index.numel() > 0 else 0
        elif value_checks_enabled(index) and index.numel() > 0:
            lo, hi = int(index.min()), int(index.max())
            if lo < 0 or hi >= dim_size:
                raise ValueError(f"'{index_name}' holds set ids in "
                                 f"[{lo}, {hi}] but 'dim_size' is {dim_size}; "
                                 f"ids must lie in [0, {dim_size - 1}]")
    else:
        if dim_size is None:
            dim_size = 1
        elif dim_size == 0 and num_rows > 0:
            raise ValueError(f"Without '{index_name}' or 'ptr' all rows form "
                             f"set 0, but 'dim_size' is 0 and 'x' has "
                             f"{num_rows} rows")
        index = torch.zeros(num_rows, dtype=torch.long, device=x.device)
    return Sets(index, ptr, dim_size, dim)


def _check_ptr_values(ptr: Tensor, num_rows: int, index: Optional[Tensor],
                      index_name: str) -> None:
    first, last = int(ptr[0]), int(ptr[-1])
    if first != 0 or last != num_rows:
        raise ValueError(f"'ptr' must start at 0 and end at the number of "
                         f"rows of 'x' ({num_rows}) (got ptr[0] = {first}, "
                         f"ptr[-1] = {last})")
    if ptr.numel() > 1 and bool((ptr[1:] < ptr[:-1]).any()):
        shown = ptr.tolist() if ptr.numel() <= 20 else ptr
        raise ValueError(f"'ptr' must be non-decreasing (got {shown})")
    if index is not None and not torch.equal(index,
                                             ptr_to_index(ptr, num_rows)):
        raise ValueError(f"'{index_name}' and 'ptr' describe different sets; "
                         f"pass only one of them")


def element_index(x: Tensor, index: Optional[Tensor], ptr: Optional[Tensor],
                  dim: int = 0) -> Tensor:
    r"""The set id of every row of :obj:`x` (along :obj:`dim`), from
    :obj:`index` or :obj:`ptr` as :func:`resolve_sets` returned them."""
    if index is not None:
        return index
    assert ptr is not None
    return ptr_to_index(ptr, x.size(dim))


# Aggregations ################################################################

#: The aggregations most code uses, suggested first for unknown names.
COMMON_AGGRS = ('sum', 'mean', 'max', 'min', 'softmax', 'std', 'median')


def resolve_aggr(aggr: AggrType,
                 aggr_kwargs: Optional[Dict[str, Any]] = None) -> Aggregation:
    r"""Turns :obj:`aggr` into a :class:`torch_geometric.nn.aggr.Aggregation`.

    Accepts any string :func:`torch_geometric.nn.resolver.aggregation_resolver`
    knows (:obj:`"sum"`, :obj:`"mean"`, :obj:`"max"`, :obj:`"softmax"`, ...),
    an :class:`Aggregation` instance, or a list of either (a
    :class:`~torch_geometric.nn.aggr.MultiAggregation` that concatenates).
    An unknown name raises with the closest valid names.
    """
    if aggr is None:
        raise ValueError("'aggr' must be given (e.g. 'sum', 'mean', 'max')")
    if isinstance(aggr, (list, tuple)):
        if len(aggr) == 0:
            raise ValueError("'aggr' must not be an empty list")
        for item in aggr:
            _check_aggr_item(item)
        aggr = list(aggr)
    else:
        _check_aggr_item(aggr)
    return aggregation_resolver(aggr, **(aggr_kwargs or {}))


def _check_aggr_item(aggr: Any) -> None:
    if isinstance(aggr, Aggregation):
        return
    if not isinstance(aggr, str):
        raise TypeError(f"'aggr' must be a string, an Aggregation or a list "
                        f"of them (got {type(aggr).__name__})")
    try:
        aggregation_resolver(aggr)
    except ValueError:
        raise ValueError(_unknown_aggr_message(aggr)) from None
    except TypeError:
        pass  # known, but needs arguments (aggr_kwargs)


def _unknown_aggr_message(name: str) -> str:
    import torch_geometric.nn.aggr as aggr_module
    known = sorted(
        n[:-len('Aggregation')].lower() for n in aggr_module.__all__
        if n.endswith('Aggregation') and n != 'Aggregation')
    close = difflib.get_close_matches(name.lower(), list(COMMON_AGGRS) +
                                      known, n=3, cutoff=0.6)
    hint = (f"; did you mean {' or '.join(repr(c) for c in close)}?"
            if close else '')
    others = [k for k in known if k not in COMMON_AGGRS]
    return (f"Unknown 'aggr' {name!r}{hint} Common choices: "
            f"{', '.join(repr(c) for c in COMMON_AGGRS)}; also "
            f"{', '.join(repr(c) for c in others)}, an Aggregation instance, "
            f"or a list of these")


def pooled_width(aggr: Aggregation, in_channels: Optional[int]
                 ) -> Optional[int]:
    r"""Feature width after pooling :obj:`in_channels`-wide rows with
    :obj:`aggr` (:obj:`None` when :obj:`in_channels` is unknown).

    Found by running :obj:`aggr` on one zero row, so that it holds for any
    aggregation, PyG's and users' alike, without reading their attributes;
    the random-number state is left as it was."""
    if in_channels is None or in_channels <= 0:
        return None
    param = next(iter(aggr.parameters()), None)
    kwargs = {} if param is None else dict(device=param.device,
                                           dtype=param.dtype)
    x = torch.zeros(1, in_channels, **kwargs)
    index = torch.zeros(1, dtype=torch.long, device=x.device)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        return apply_aggr(aggr, x, index, None, 1, 0).size(-1)


#: The PyG aggregations that need rows grouped by set (they pad sets densely
#: through :meth:`Aggregation.to_dense_batch`); pinned by a test.
SORTED_INPUT = (SortAggregation, GraphMultisetTransformer,
                SetTransformerAggregation, LSTMAggregation, GRUAggregation,
                MLPAggregation, LCMAggregation, PatchTransformerAggregation)

_FAST_REDUCE = {
    SumAggregation: 'sum',
    MeanAggregation: 'mean',
    MaxAggregation: 'max',
}


def _needs_sorted_rows(aggr: Aggregation) -> bool:
    if isinstance(aggr, MultiAggregation):
        return any(_needs_sorted_rows(a) for a in aggr.aggrs)
    return isinstance(aggr, SORTED_INPUT)


def apply_aggr(aggr: Aggregation, x: Tensor, index: Optional[Tensor],
               ptr: Optional[Tensor], dim_size: int, dim: int,
               max_num_elements: Optional[int] = None) -> Tensor:
    r"""Runs :obj:`aggr` on input that :func:`resolve_sets` validated
    (:obj:`dim` non-negative); :obj:`max_num_elements`, where given, goes to
    :obj:`aggr` as to PyG's aggregations that pad sets (sum, mean and max
    ignore it).

    Gives what PyG's aggregation gives, empty sets included, with two
    additions: rows need not be grouped by set for the aggregations that pad
    sets densely (:data:`SORTED_INPUT`; they are stably sorted first), and
    where PyG fails on some empty sets, or gives a value that depends on the
    other sets of the batch, every empty set gets the value PyG gives an
    empty set next to non-empty ones (quantiles, including the median: their
    :obj:`fill_value`; padding aggregations, which fail on input without
    rows for two sets or more). Sum, mean and max run through
    :func:`~torch_geometric_deepsets._kernels.segment_pool`.
    """
    reduce = _FAST_REDUCE.get(type(aggr))
    if reduce is not None:
        return segment_pool(x, index, ptr, dim_size, reduce, dim)
    if index is None:
        index = element_index(x, None, ptr, dim)
    if ptr is None and _needs_sorted_rows(aggr):
        # The order of rows inside a set does not matter to these.
        index, perm = torch.sort(index, stable=True)
        x = x.index_select(dim, perm)
    if dim > 0 and not use_torch_scatter():
        # PyG reduces over ptr along a dimension other than the first only
        # with torch-scatter; the set ids serve every aggregation alike.
        ptr = None
    if isinstance(aggr, QuantileAggregation):
        return _with_leading_set(aggr, x, index, dim_size, dim, rows=2)
    if x.size(dim) == 0:
        return _with_leading_set(aggr, x, index, dim_size, dim, rows=1)
    # Only PyG's padding aggregations take the argument.
    kwargs = {} if max_num_elements is None else {
        'max_num_elements': max_num_elements}
    return aggr(x, index, ptr=ptr, dim_size=dim_size, dim=dim, **kwargs)


def _with_leading_set(aggr: Aggregation, x: Tensor, index: Tensor,
                      dim_size: int, dim: int, rows: int) -> Tensor:
    r""":obj:`aggr` run with one extra set of :obj:`rows` zero rows put in
    front of all others and dropped again, so that every empty set gets
    the value PyG gives an empty set next to non-empty ones.

    PyG's quantiles (the median included) give an empty set their
    :obj:`fill_value`, but index out of range for an empty set before the
    first row, and for one after the last row when there are fewer than two
    rows (:obj:`rows=2` rules out both). PyG's aggregations that pad sets
    densely fail on input without rows when there are two sets or more, and
    give a value for one set, so an empty set's result would depend on how
    many sets share the batch (:obj:`rows=1`). No value is read back to the
    host (PyG's quantile itself still counts the sets with
    :func:`torch.bincount`)."""
    shape = list(x.shape)
    shape[dim] = rows
    x = torch.cat([x.new_zeros(shape), x], dim)
    index = torch.cat([index.new_zeros(rows), index + 1])
    out = aggr(x, index, dim_size=dim_size + 1, dim=dim)
    return out.narrow(dim, 1, dim_size)


def pool(
    x: Tensor,
    batch: Optional[Tensor] = None,
    ptr: Optional[Tensor] = None,
    dim_size: Optional[int] = None,
    aggr: AggrType = 'sum',
    dim: int = -2,
) -> Tensor:
    r"""Pools the rows of :obj:`x` set by set.

    .. math::
        \mathbf{p}_s = \bigoplus_{i \,:\, b_i = s} \mathbf{x}_i

    An empty set (an id below :obj:`dim_size` that owns no row) pools to
    what PyG's aggregation gives for it (0 for :obj:`"sum"`, :obj:`"mean"`
    and :obj:`"max"`, with finite gradients), in every batch: where PyG's
    aggregation fails on some empty sets, or on input without rows, every
    empty set gets the value PyG gives an empty set next to non-empty ones.

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
        dim (int, optional): The dimension of the elements; any, the last
            one included, as for PyG's aggregations. (default: :obj:`-2`)

    Shapes:
        - **input:** :math:`(*, N, F)`, :math:`(N)` or :math:`(B + 1)`
        - **output:** :math:`(*, B, F')`
    """
    sets = resolve_sets(x, batch, ptr, dim_size, dim, any_dim=True)
    module = aggr if isinstance(aggr, Aggregation) else resolve_aggr(aggr)
    return apply_aggr(module, x, *sets)


def broadcast(pooled: Tensor, x: Tensor, index: Optional[Tensor],
              ptr: Optional[Tensor], dim: int) -> Tensor:
    r"""Copies each set's row of :obj:`pooled` to every element of the set
    (along :obj:`dim`, non-negative)."""
    return pooled.index_select(dim, element_index(x, index, ptr, dim))


def call_with_sets(module: torch.nn.Module, x: Tensor, before: tuple,
                   index: Optional[Tensor], ptr: Optional[Tensor],
                   dim_size: Optional[int], dim: int, index_name: str,
                   channels: Optional[int] = None,
                   first: Optional[torch.nn.Module] = None,
                   any_dim: bool = False, matrix: bool = False,
                   **kwargs: Any) -> Tensor:
    r"""The :meth:`__call__` of every layer and model: runs
    :func:`resolve_sets` once (and :func:`check_dtype` against the
    parameters of :obj:`first`, the network that receives :obj:`x`), then
    the module (hooks included) as :obj:`module(x, *before, index, ptr=,
    dim_size=, dim=)`, whose :meth:`forward` then sees validated input only
    (:obj:`dim` non-negative, :obj:`dim_size` filled in).
    :class:`torch.fx.Proxy` input, as when PyG's
    :func:`~torch_geometric.nn.to_hetero` traces a model, passes through
    untouched."""
    if not isinstance(x, torch.fx.Proxy):
        index, ptr, dim_size, dim = resolve_sets(x, index, ptr, dim_size, dim,
                                                 index_name, channels, any_dim,
                                                 matrix)
        if first is not None:
            check_dtype(x, first)
    return torch.nn.Module.__call__(module, x, *before, index, ptr=ptr,
                                    dim_size=dim_size, dim=dim, **kwargs)


def call_validated(module: torch.nn.Module, *args: Any,
                   **kwargs: Any) -> Tensor:
    r"""Runs a layer or model of the package (hooks included) from inside
    another one's :meth:`forward`, on input that the enclosing
    :func:`call_with_sets` validated: arguments as that :meth:`forward`
    takes them (:obj:`dim` non-negative, :obj:`dim_size` filled in). A
    stack of layers thus validates its input once per call, not once per
    layer."""
    return torch.nn.Module.__call__(module, *args, **kwargs)


def check_dtype(x: Tensor, module: torch.nn.Module) -> None:
    r"""Raises a :class:`TypeError` that says what to convert when :obj:`x`
    cannot enter :obj:`module`: integers into a first layer that is not an
    embedding, or floats of another precision than the parameters (outside
    :func:`torch.autocast`)."""
    first = next((m for m in module.modules()
                  if next(m.parameters(recurse=False), None) is not None),
                 None)
    if first is None:
        return
    param = next(first.parameters(recurse=False))
    if not param.dtype.is_floating_point:
        return
    if not (x.dtype.is_floating_point or x.dtype.is_complex):
        if isinstance(first, (torch.nn.Embedding, torch.nn.EmbeddingBag)):
            return
        raise TypeError(f"'x' holds {x.dtype} values but the first layer "
                        f"({type(first).__name__}) takes {param.dtype} "
                        f"features; convert with x.to({param.dtype}), or "
                        f"start phi with torch.nn.Embedding for integer "
                        f"tokens")
    if x.dtype != param.dtype and not torch.is_autocast_enabled(
            x.device.type):
        raise TypeError(f"'x' is {x.dtype} but the model's parameters are "
                        f"{param.dtype}; convert one of them, e.g. "
                        f"x.to({param.dtype}) or model.to({x.dtype})")
