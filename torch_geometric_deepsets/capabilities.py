r"""What an aggregation declares it supports beyond pooling whole sets, so
that the package never guesses from class names: whether (and how) it pools
a set whose rows arrive in chunks (:mod:`torch_geometric_deepsets.stream`),
and whether (and how) it pools weighted rows (the :obj:`weight` argument,
:mod:`torch_geometric_deepsets.aggr.weighted`).

The package's own aggregations and PyG's are declared where their support
is written; an aggregation of a user's declares itself with the same calls
(see :doc:`/howto/extending`). Messages that list what is supported are
derived from these declarations.
"""
from typing import Any, Callable, Dict, List, Optional, Type, TypeVar

from torch_geometric.nn.aggr import Aggregation, MultiAggregation

T = TypeVar('T')

_STREAMS: Dict[type, type] = {}
_REFUSALS: Dict[type, str] = {}
_WEIGHTED: Dict[type, Callable] = {}
_UNWEIGHTED: Dict[type, str] = {}

#: Why poolings of these kinds cannot stream.
SORTS = ('it sorts the values of each set, which needs all of them at '
         'once; no fixed-size running summary gives it exactly')
SEQUENCES = ('it reads a set as ordered sequences of its elements, and its '
             'result depends on all of them together')
ATTENTION = ('its attention compares every element with the others of its '
             'set, so it needs the whole set at once')
#: Why poolings of these kinds take no weights.
ORDER_STATISTICS = ('it pools by the ranks of the values in each set, and '
                    'weights would need a weighted order statistic, which '
                    'it does not implement')
#: Why an aggregation that declares nothing cannot stream.
UNDECLARED = ('it is not one of the poolings whose per-set state is a fixed '
              'set of sums and running maxima (an aggregation of your own '
              'streams once it declares its state with '
              'torch_geometric_deepsets.aggr.declare_streaming)')


def declare_streaming(*classes: Type[Aggregation]) -> Callable[[T], T]:
    r"""Declares, as a class decorator of a streamed pooling's state (a
    :class:`~torch_geometric_deepsets.stream.parts.StreamPart`), that
    instances of exactly these aggregation classes stream with it (a
    subclass may compute something else, so it declares itself)."""
    def register(part: T) -> T:
        for cls in classes:
            _STREAMS[cls] = part
        return part
    return register


def declare_not_streamable(why: str, *classes: Type[Aggregation]) -> None:
    r"""Declares that these aggregation classes (and their subclasses) cannot
    pool a set streamed in chunks, and :obj:`why`, for the error message."""
    for cls in classes:
        _REFUSALS[cls] = why


def streaming_part(aggr: Aggregation) -> Optional[type]:
    r"""The streamed state declared for :obj:`aggr`'s class, if any."""
    return _STREAMS.get(type(aggr))


def streaming_refusal(aggr: Aggregation) -> str:
    r"""Why :obj:`aggr` cannot stream: the reason declared for its class or
    the closest base class that declared one."""
    for cls in type(aggr).__mro__:
        if cls in _REFUSALS:
            return _REFUSALS[cls]
    return UNDECLARED


def streamable_names() -> List[str]:
    r"""The names of the aggregations declared streamable, in the order
    declared (:obj:`"sum"` for :class:`SumAggregation`, as PyG's resolver
    names them)."""
    return [_short(cls.__name__) for cls in _STREAMS]


def streams(aggr: Aggregation) -> bool:
    r"""Whether :obj:`aggr` (every member of a
    :class:`~torch_geometric.nn.aggr.MultiAggregation`) can stream."""
    if isinstance(aggr, MultiAggregation):
        return all(streams(a) for a in aggr.aggrs)
    return streaming_part(aggr) is not None


# Weights #####################################################################

#: Why an aggregation that declares nothing takes no weights.
UNWEIGHTED = ('it declares no weighted form (an aggregation of your own takes '
              'weights once it declares one with '
              'torch_geometric_deepsets.aggr.declare_weighted)')


def declare_weighted(*classes: Type[Aggregation]) -> Callable[[T], T]:
    r"""Declares, as a decorator of a function :obj:`pool(aggr, x, index,
    ptr, dim_size, dim, weight)`, the weighted form of exactly these
    aggregation classes: a row of weight :math:`k` counts as :math:`k`
    copies of it (:obj:`weight` broadcasts against :obj:`x`)."""
    def register(fn: T) -> T:
        for cls in classes:
            _WEIGHTED[cls] = fn
        return fn
    return register


def declare_not_weighted(why: str, *classes: Type[Aggregation]) -> None:
    r"""Declares that these aggregation classes (and their subclasses) take
    no weights, and :obj:`why`, for the error message."""
    for cls in classes:
        _UNWEIGHTED[cls] = why


def weighted_form(aggr: Aggregation) -> Optional[Callable]:
    r"""The weighted form declared for :obj:`aggr`'s class, if any."""
    return _WEIGHTED.get(type(aggr))


def weighting_refusal(aggr: Any) -> str:
    r"""Why :obj:`aggr` (an aggregation or a module of the package) takes no
    weights: the reason declared for its class or the closest base class
    that declared one."""
    for cls in type(aggr).__mro__:
        if cls in _UNWEIGHTED:
            return _UNWEIGHTED[cls]
    return UNWEIGHTED


def weighting_error(aggr: Any) -> ValueError:
    r"""The error for :obj:`weight` given to :obj:`aggr`, which takes none:
    it names the class, says why and lists the weighted poolings."""
    names = ', '.join(repr(n) for n in weighted_names())
    return ValueError(f"{type(aggr).__name__} takes no 'weight': "
                      f"{weighting_refusal(aggr)}. Weighted poolings: "
                      f"{names}, and lists of them")


def weighted_names() -> List[str]:
    r"""The names of the aggregations declared weighted, in the order
    declared."""
    return [_short(cls.__name__) for cls in _WEIGHTED]


def _short(name: str) -> str:
    return name[:-len('Aggregation')].lower() if name.endswith(
        'Aggregation') else name
