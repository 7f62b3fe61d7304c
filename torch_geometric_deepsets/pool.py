r"""Pooling rows set by set: resolving an aggregation from what a user gives
(:func:`resolve_aggr`), running it on validated input with PyG's values
for empty sets (:func:`apply_aggr`), the functional :func:`pool`, and
copying set rows back to the elements (:func:`broadcast`). How rows form
sets is :mod:`torch_geometric_deepsets.sets`'s."""
import difflib
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
    MinAggregation,
    MLPAggregation,
    MultiAggregation,
    PatchTransformerAggregation,
    QuantileAggregation,
    SetTransformerAggregation,
    SortAggregation,
    SumAggregation,
)
from torch_geometric.nn.resolver import aggregation_resolver
from torch_geometric_deepsets._kernels import segment_pool
from torch_geometric_deepsets._kernels.paths import use_torch_scatter
from torch_geometric_deepsets.capabilities import (
    weighted_form,
    weighting_error,
)
from torch_geometric_deepsets.checks import check_weight
from torch_geometric_deepsets.grouping import (
    element_index,
    element_weights,
    resolve_sets,
)
from torch_geometric_deepsets.sets import SetModule

AggrType = Union[str, List[str], Aggregation, List[Aggregation], None]

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
#: through :meth:`Aggregation.to_dense_batch`; pinned by
#: ``test_sorted_input_lists_every_aggregation_that_pads_sets``).
SORTED_INPUT = (SortAggregation, GraphMultisetTransformer,
                SetTransformerAggregation, LSTMAggregation, GRUAggregation,
                MLPAggregation, LCMAggregation, PatchTransformerAggregation)

_FAST_REDUCE = {
    SumAggregation: 'sum',
    MeanAggregation: 'mean',
    MaxAggregation: 'max',
    MinAggregation: 'min',
}


def _needs_sorted_rows(aggr: Aggregation) -> bool:
    if isinstance(aggr, MultiAggregation):
        return any(_needs_sorted_rows(a) for a in aggr.aggrs)
    return isinstance(aggr, SORTED_INPUT)


def apply_aggr(aggr: Aggregation, x: Tensor, index: Optional[Tensor],
               ptr: Optional[Tensor], dim_size: int, dim: int,
               max_num_elements: Optional[int] = None,
               weight: Optional[Tensor] = None) -> Tensor:
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
    rows for two sets or more). Sum, mean, max and min run through
    :func:`~torch_geometric_deepsets._kernels.segment_pool`.

    With :obj:`weight` (checked, one per row of :obj:`x`), every row of
    weight :math:`k` counts as :math:`k` copies of it: the aggregation's
    declared weighted form runs
    (:mod:`~torch_geometric_deepsets.aggr.weighted`), and one that has none
    raises a :class:`ValueError` naming it.
    """
    if weight is not None:
        return _apply_weighted(aggr, x, index, ptr, dim_size, dim, weight)
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


def _apply_weighted(aggr: Aggregation, x: Tensor, index: Optional[Tensor],
                    ptr: Optional[Tensor], dim_size: int, dim: int,
                    weight: Tensor) -> Tensor:
    if isinstance(aggr, MultiAggregation):
        return aggr.combine([
            _apply_weighted(member, x, index, ptr, dim_size, dim, weight)
            for member in aggr.aggrs
        ])
    if isinstance(aggr, SetModule) and aggr.takes_weight:
        # The package's own aggregations (a nested model) take the weights
        # of the rows as they are given.
        return aggr(x, index, ptr=ptr, dim_size=dim_size, dim=dim,
                    weight=weight)
    form = weighted_form(aggr)
    if form is None:
        raise weighting_error(aggr)
    return form(aggr, x, index, ptr, dim_size, dim,
                element_weights(weight, x, dim))


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
    *,
    weight: Optional[Tensor] = None,
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
        weight (torch.Tensor, optional): A weight per element :math:`(N)`
            (or the shape of :obj:`x` without its features), float or
            integer: an element of weight :math:`k` counts as :math:`k`
            copies of it (0: absent). (default: :obj:`None`)

    Shapes:
        - **input:** :math:`(*, N, F)`, :math:`(N)` or :math:`(B + 1)`
        - **output:** :math:`(*, B, F')`
    """
    sets = resolve_sets(x, batch, ptr, dim_size, dim, any_dim=True)
    if weight is not None:
        check_weight(weight, x, sets.dim)
    module = aggr if isinstance(aggr, Aggregation) else resolve_aggr(aggr)
    return apply_aggr(module, x, *sets, weight=weight)


def broadcast(pooled: Tensor, x: Tensor, index: Optional[Tensor],
              ptr: Optional[Tensor], dim: int) -> Tensor:
    r"""Copies each set's row of :obj:`pooled` to every element of the set
    (along :obj:`dim`, non-negative)."""
    return pooled.index_select(dim, element_index(x, index, ptr, dim))
