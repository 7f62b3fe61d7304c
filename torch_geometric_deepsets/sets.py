r"""The one call protocol of every layer and model.

How rows form sets (the elements as rows of :obj:`x`, and :obj:`index` /
:obj:`batch` or :obj:`ptr`) is :mod:`torch_geometric_deepsets.grouping`'s.
Every public module of the package is a :class:`SetModule`, in one of two
families that mirror PyG:

* **aggregations** (:class:`SetAggregation`, also PyG
  :class:`~torch_geometric.nn.aggr.Aggregation`\ s): one row per set, called
  as :obj:`module(x, index=None, ptr=None, dim_size=None, dim=-2)`, as
  PyG's aggregations are, so they fit :obj:`aggr=` of any
  :class:`~torch_geometric.nn.conv.MessagePassing` layer;
* **set modules** (:class:`SetModule`): called as :obj:`module(x,
  batch=None, ptr=None, dim_size=None, dim=-2)`, as PyG's readouts and
  normalisations take the batch vector.

A module conditioned on a per-set context (a
:class:`ConditionedSetModule`) takes it as the *second* argument,
:obj:`module(x, context, batch, ...)`: it is data like :obj:`x` (one row
per set), it must be given, and in the second place
it reaches the module through the positional signatures of PyG's
:class:`~torch_geometric.nn.Sequential` (:obj:`"x, context, batch -> x"`)
without naming :obj:`ptr`, :obj:`dim_size` and :obj:`dim`.

The protocol (:meth:`SetModule.__call__`) validates the input once, resolves
:obj:`(index | ptr, dim_size, dim)` as PyG's :meth:`Aggregation.__call__`
does, and then calls :meth:`forward`, which sees validated input only: a
non-negative :obj:`dim`, a filled-in :obj:`dim_size`, and the set id of
every row (unless the class sets :obj:`needs_index = False`).
"""
from typing import Any, ClassVar, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric.nn.aggr import Aggregation
from torch_geometric_deepsets.capabilities import weighting_error
from torch_geometric_deepsets.checks import (
    check_context,
    check_dtype,
    check_weight,
)
from torch_geometric_deepsets.grouping import (
    element_index,
    fold_weight,
    resolve_sets,
)
from torch_geometric_deepsets.leading import fold_leading, unfold_leading

__all__ = ['SetModule', 'SetAggregation', 'ConditionedSetModule']

_FAMILY = {'index': 'PyG aggregations', 'batch': "PyG's readouts"}

#: The arguments every :meth:`forward` takes, documented once and appended
#: to each forward's docstring by the protocol.
_CONTEXT_DOC = """context (torch.Tensor): One context row per set
    :math:`(B, C)`, shared by all leading slices, or
    :math:`(*, B, C)`."""
_SET_ARGS_DOC = """x (torch.Tensor): Element features :math:`(*, N, F)`.
{index} (torch.Tensor, optional): The set id of every element,
    {index_what}; :obj:`None` with :obj:`ptr=None`
    means one set. (default: :obj:`None`)
ptr (torch.Tensor, optional): Boundaries of sorted sets
    :math:`(B + 1)`, an alternative to :obj:`{index}`.
    (default: :obj:`None`)
dim_size (int, optional): Number of sets :math:`B`; without it,
    one more than the largest set id (read from the ids, as in
    PyG). (default: :obj:`None`)
dim (int, optional): The dimension of the elements.
    (default: :obj:`-2`)"""
_WEIGHT_DOC = """weight (torch.Tensor, optional): A weight per element
    :math:`(N)` or :math:`(*, N)`, float or integer: an element of
    weight :math:`k` counts as :math:`k` copies of it (0: absent).
    Keyword only. (default: :obj:`None`)"""
_AGGREGATION_DOC = """max_num_elements (int, optional): The most elements of
    a set that aggregations which pad sets (e.g. :obj:`"lstm"`)
    take, as in PyG's :class:`~torch_geometric.nn.aggr.Aggregation`.
    (default: :obj:`None`)"""


def _document_forward(cls: type) -> None:
    r"""Appends the arguments of :obj:`cls`'s family to the docstring of
    the :meth:`forward` it defines."""
    forward = cls.__dict__.get('forward')
    doc = None if forward is None else forward.__doc__
    if not doc or 'Args:' in doc:
        return
    lines = _SET_ARGS_DOC.format(
        index=cls.index_name,
        index_what=("PyG's :obj:`batch` vector" if cls.index_name == 'index'
                    else "like PyG's :obj:`batch`")).splitlines()
    if cls.takes_context:
        lines[1:1] = _CONTEXT_DOC.splitlines()
    if cls.takes_weight:
        lines += _WEIGHT_DOC.splitlines()
    if cls.index_name == 'index':
        lines += _AGGREGATION_DOC.splitlines()
    body = '\n'.join(' ' * 12 + line for line in lines)
    forward.__doc__ = doc.rstrip() + '\n\n        Args:\n' + body + '\n'


class SetModule(torch.nn.Module):
    r"""Base class of every layer and model of the package: owns the call.

    :meth:`__call__` takes :obj:`(x, [context,] batch=None, ptr=None,
    dim_size=None, dim=-2)` (see the module docstring for the two families),
    validates them, and calls :meth:`forward` with:

    * :obj:`x`, checked against :attr:`in_channels` and the dtype of
      :meth:`input_layer`; input :math:`[*, N, F]` reaches a
      :obj:`folds_leading_dims` class as a matrix whose leading slices are
      extra sets, and its output is laid out like the input again;
    * :obj:`context` (second, for a :class:`ConditionedSetModule`), checked
      by :func:`~torch_geometric_deepsets.checks.check_context` against
      :meth:`ConditionedSetModule.context_width`;
    * the set id of every row (unless :obj:`needs_index` is :obj:`False`:
      then :obj:`None` where only :obj:`ptr` came), :obj:`ptr`, the number
      of sets :obj:`dim_size` and a non-negative :obj:`dim`, by keyword.

    A subclass says what differs through the class attributes and hooks
    below, and writes only :meth:`forward`.
    """
    #: The name of the set-id argument: :obj:`"batch"` for set modules,
    #: :obj:`"index"` for aggregations (as in PyG).
    index_name: ClassVar[str] = 'batch'
    #: Whether :meth:`forward` takes a per-set context second: set by
    #: :class:`ConditionedSetModule`, the base class of such modules.
    takes_context: ClassVar[bool] = False
    #: Whether :meth:`forward` takes the elements as the rows of a matrix
    #: only; the protocol then folds leading dimensions into sets.
    folds_leading_dims: ClassVar[bool] = False
    #: Whether :meth:`forward` needs the set id of every row even where
    #: :obj:`ptr` alone came (most do; pooling alone can run on :obj:`ptr`).
    needs_index: ClassVar[bool] = True
    #: Whether :meth:`forward` takes per-element weights (the keyword-only
    #: :obj:`weight`, checked and laid out like the rows of :obj:`x`);
    #: a class that cannot declares why with
    #: :func:`~torch_geometric_deepsets.aggr.declare_not_weighted`.
    takes_weight: ClassVar[bool] = False

    #: The number of features per element :meth:`forward` takes, where
    #: known (:obj:`None`, or :obj:`-1` for a lazy width, otherwise): the
    #: default of :attr:`input_width`.
    in_channels: Optional[int] = None

    _call_names: ClassVar[Tuple[str, ...]] = ('batch', 'ptr', 'dim_size',
                                              'dim')

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._call_names = (('context', ) if cls.takes_context else ()) + (
            cls.index_name, 'ptr', 'dim_size', 'dim')
        _document_forward(cls)

    # Hooks ###################################################################

    @property
    def input_width(self) -> Optional[int]:
        r"""The number of features per element :meth:`forward` takes, where
        known (:obj:`None` or :obj:`-1` otherwise): :attr:`in_channels`
        unless a class knows better."""
        return self.in_channels

    def input_layer(self) -> Optional[torch.nn.Module]:
        r"""The module whose parameters first meet :obj:`x` (for the dtype
        check): the whole module unless a class names its first network
        (such as :math:`\phi`)."""
        return self

    def elements_along_any_dim(self) -> bool:
        r"""Whether the elements may lie along the last dimension too (as in
        PyG's aggregations, for a module that does not read the last
        dimension as features)."""
        return False

    # The call ################################################################

    def __call__(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if isinstance(x, torch.fx.Proxy):
            # Traced by PyG's to_hetero (as a leaf): record the call as is.
            return torch.nn.Module.__call__(self, x, *args, **kwargs)
        bound = self._bind(args, kwargs)
        weight = bound.pop('weight', None)
        context = bound.pop('context', None)
        index = bound.pop(self.index_name, None)
        ptr = bound.pop('ptr', None)
        dim_size = bound.pop('dim_size', None)
        dim = bound.pop('dim', -2)

        width = self.input_width
        index, ptr, dim_size, dim = resolve_sets(
            x, index, ptr, dim_size, dim, self.index_name,
            None if width is None or width < 0 else width,
            any_dim=self.elements_along_any_dim())
        check_dtype(x, self.input_layer())
        if self.takes_context:
            check_context(context, dim_size, self.context_width(), x, dim,
                          lazy=self.context_channels == -1,
                          index_name=self.index_name)
        if weight is not None:
            check_weight(weight, x, dim)
        if self.needs_index or self.folds_leading_dims:
            index = element_index(x, index, ptr, dim)

        folded = self.folds_leading_dims and x.dim() > 2
        if folded:
            ndim, rows_dim = x.dim(), dim
            leading = x.movedim(dim, -2).shape[:-2]
            if weight is not None:
                weight = fold_weight(weight, x, dim)
            x, index, ptr, dim_size, context = fold_leading(
                x, dim, index, ptr, dim_size, context)
            dim = 0
        if self.takes_weight:
            bound['weight'] = weight
        before = (context, ) if self.takes_context else ()
        out = torch.nn.Module.__call__(self, x, *before, index, ptr=ptr,
                                       dim_size=dim_size, dim=dim, **bound)
        if folded:
            out = unfold_leading(out, tuple(leading), rows_dim, ndim)
        return out

    def _bind(self, args: tuple, kwargs: Dict[str, Any]) -> Dict[str, Any]:
        names = self._call_names
        cls = type(self).__name__
        if len(args) > len(names):
            raise TypeError(f"{cls}() takes at most {len(names) + 1} "
                            f"positional arguments (x, {', '.join(names)}) "
                            f"but {len(args) + 1} were given")
        bound = dict(zip(names, args))
        for key, value in kwargs.items():
            if key in bound:
                raise TypeError(f"{cls}() got multiple values for argument "
                                f"'{key}'")
            bound[key] = value
        if 'weight' in bound and bound['weight'] is not None and \
                not self.takes_weight:
            raise weighting_error(self)
        if 'context' in bound and not self.takes_context:
            models = ' and '.join(ConditionedSetModule.public_classes())
            raise ValueError(f"{cls} takes no 'context'; the models "
                             f"conditioned on a per-set context are "
                             f"{models}, called as model(x, context, "
                             f"batch)")
        other = 'batch' if self.index_name == 'index' else 'index'
        if other in bound:
            raise TypeError(f"{cls}() names the set ids "
                            f"'{self.index_name}', not '{other}', as "
                            f"{_FAMILY[self.index_name]} do; pass "
                            f"{self.index_name}={other}, or the ids "
                            f"positionally after x")
        return bound


def call_validated(module: SetModule, x: Tensor, index: Tensor,
                   dim_size: int, dim: int = 0,
                   weight: Optional[Tensor] = None) -> Tensor:
    r"""Runs a :class:`SetModule` from inside another one's
    :meth:`~SetModule.forward`, on input the enclosing call validated
    (hooks kept, no second prologue): a stack validates its input once per
    call, not once per layer."""
    if weight is None:
        return torch.nn.Module.__call__(module, x, index, dim_size=dim_size,
                                        dim=dim)
    return torch.nn.Module.__call__(module, x, index, dim_size=dim_size,
                                    dim=dim, weight=weight)


class SetAggregation(SetModule, Aggregation):
    r"""Base class of the package's aggregations: a :class:`SetModule` that
    is a PyG :class:`~torch_geometric.nn.aggr.Aggregation`, called as
    :obj:`module(x, index=None, ptr=None, dim_size=None, dim=-2)` and giving
    one row per set. Extra keyword arguments PyG passes to aggregations
    (:obj:`max_num_elements`) reach :meth:`forward`."""
    index_name: ClassVar[str] = 'index'


class ConditionedSetModule(SetModule):
    r"""Base class of the modules conditioned on a per-set context
    :math:`\mathbf{z}_s` (:math:`[B, C]`), which they take second:
    :obj:`module(x, context, batch=None, ptr=None, dim_size=None, dim=-2)`.

    A subclass sets :attr:`context_channels` (the width :math:`C` it was
    built for, :obj:`-1` for a width found at the first call) and may
    override :meth:`context_width`.
    """
    takes_context: ClassVar[bool] = True
    #: The context width :math:`C` the module was built for; :obj:`-1`
    #: for one found at the first call.
    context_channels: int = -1

    def context_width(self) -> Optional[int]:
        r"""The context width the next call must bring, where known:
        :attr:`context_channels`, or for a lazy width the one the first
        call found (:obj:`None` before it)."""
        return None if self.context_channels < 0 else self.context_channels

    @classmethod
    def public_classes(cls) -> List[str]:
        r"""The names of the package's public conditioned modules (for
        messages that list them)."""
        found, todo = [], list(cls.__subclasses__())
        while todo:
            sub = todo.pop(0)
            todo += sub.__subclasses__()
            public = sub.__module__.startswith('torch_geometric_deepsets.') \
                and not sub.__name__.startswith('_')
            if public and sub.__name__ not in found:
                found.append(sub.__name__)
        return sorted(found)
