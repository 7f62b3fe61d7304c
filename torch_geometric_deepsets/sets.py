r"""How rows form sets, and the one call protocol of every layer and model.

A batch of sets is stored like a PyG mini-batch of edgeless graphs: the
elements of all sets are the rows of one tensor :obj:`x` of shape
:math:`[*, N, F]`, and either a set-id vector (:obj:`index` or
:obj:`batch`) of shape :math:`[N]` (the set of each row, in any order) or a
:obj:`ptr` vector of shape :math:`[B + 1]` (the row boundaries of sorted
sets) says which rows form which set. Rows lie along :obj:`dim` (:obj:`-2`
by default, as for PyG's aggregations); the last dimension holds the
features.

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

A module conditioned on a per-set context (:obj:`takes_context`) takes it
as the *second* argument, :obj:`module(x, context, batch, ...)`: it is data
like :obj:`x` (one row per set), it must be given, and in the second place
it reaches the module through the positional signatures of PyG's
:class:`~torch_geometric.nn.Sequential` (:obj:`"x, context, batch -> x"`)
without naming :obj:`ptr`, :obj:`dim_size` and :obj:`dim`.

The protocol (:meth:`SetModule.__call__`) validates the input once, resolves
:obj:`(index | ptr, dim_size, dim)` as PyG's :meth:`Aggregation.__call__`
does, and then calls :meth:`forward`, which sees validated input only: a
non-negative :obj:`dim`, a filled-in :obj:`dim_size`, and the set id of
every row (unless the class sets :obj:`needs_index = False`).
"""
import math
from typing import Any, ClassVar, Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric.nn.aggr import Aggregation
from torch_geometric_deepsets._kernels import ptr_to_index
from torch_geometric_deepsets.checks import (
    check_dtype,
    check_integer_vector,
    check_x,
    value_checks_enabled,
)


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
    r"""Validates :obj:`x` and the grouping of its rows into sets, and
    resolves :obj:`(index | ptr, dim_size)` once, as PyG's
    :meth:`Aggregation.__call__` does.

    With neither :obj:`index` nor :obj:`ptr`, all rows form set 0 (an
    all-zero :obj:`index` is returned); a larger :obj:`dim_size` adds empty
    sets after it, as in PyG. With :obj:`ptr`, :obj:`index` may
    stay :obj:`None` (:func:`element_index` builds it where needed).
    :obj:`dim_size`, the number of sets, is always filled in: from
    :obj:`ptr`, else from the largest id in :obj:`index` (a device sync on
    GPUs, as in PyG; pass :obj:`dim_size` to avoid it). The same read checks
    that no id is negative.

    Shape and dtype problems always raise. Problems that can only be seen in
    the values (ids out of range, :obj:`ptr` decreasing or not ending at the
    number of rows, :obj:`index` disagreeing with :obj:`ptr`) raise wherever
    :func:`~torch_geometric_deepsets.checks.value_checks_enabled` says, and
    wherever the range of the ids is read anyway.

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
        check_integer_vector(index_name, index)
        if index.numel() != num_rows:
            raise ValueError(f"'{index_name}' has {index.numel()} entries but "
                             f"'x' has {num_rows} rows along dim {dim}; they "
                             f"must match")
        if index.device != x.device:
            raise ValueError(f"'{index_name}' is on {index.device} but 'x' is "
                             f"on {x.device}")

    if ptr is not None:
        check_integer_vector('ptr', ptr)
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
        if index.numel() == 0:
            dim_size = 0 if dim_size is None else dim_size
        elif dim_size is None:
            dim_size = _count_sets(index, index_name)
        elif value_checks_enabled(index):
            lo, hi = torch.stack(torch.aminmax(index)).tolist()
            _check_id_range(index_name, lo, hi, dim_size)
    else:
        if dim_size is None:
            dim_size = 1
        elif dim_size == 0 and num_rows > 0:
            raise ValueError(f"Without '{index_name}' or 'ptr' all rows form "
                             f"set 0, but 'dim_size' is 0 and 'x' has "
                             f"{num_rows} rows")
        index = torch.zeros(num_rows, dtype=torch.long, device=x.device)
    return Sets(index, ptr, dim_size, dim)


def _count_sets(index: Tensor, index_name: str) -> int:
    r"""The number of sets, one more than the largest id: read from the
    device (a sync, as in PyG) together with the smallest id, which is
    checked in the same read. A compiled graph reads only the largest (its
    value checks are off, see
    :func:`~torch_geometric_deepsets.checks.value_checks_enabled`)."""
    if torch.compiler.is_compiling():
        # .item(), not int(): a traced count, not a guard on its value.
        return index.max().item() + 1
    lo, hi = torch.stack(torch.aminmax(index)).tolist()
    _check_id_range(index_name, lo, hi, None)
    return hi + 1


def _check_id_range(index_name: str, lo: int, hi: int,
                    dim_size: Optional[int]) -> None:
    if lo < 0:
        raise ValueError(f"'{index_name}' holds the negative set id {lo}; "
                         f"set ids must be 0, 1, ..., B - 1 (relabel "
                         f"arbitrary ids with torch.unique({index_name}, "
                         f"return_inverse=True)[1])")
    if dim_size is not None and hi >= dim_size:
        raise ValueError(f"'{index_name}' holds set ids in [{lo}, {hi}] but "
                         f"'dim_size' is {dim_size}; ids must lie in "
                         f"[0, {dim_size - 1}] (pass dim_size={hi + 1} or "
                         f"more, or leave it out)")


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


def check_context(context: Any, num_sets: int, channels: Optional[int],
                  x: Tensor, dim: int = -2, lazy: bool = False,
                  index_name: str = 'batch') -> None:
    r"""Raises unless :obj:`context` holds one row of :obj:`channels`
    features (any number where :obj:`channels` is :obj:`None`: a lazy
    width not yet known), of the dtype of :obj:`x`, for each of the
    :obj:`num_sets` sets: shape :math:`[B, C]`, or :math:`[*, B, C]` with
    the leading dimensions of :obj:`x` (all but the elements' :obj:`dim`
    and the features)."""
    shown = 'context_channels' if channels is None else channels
    if context is None:
        raise ValueError(f"This model takes a per-set 'context' "
                         f"[num_sets, {shown}] as its second argument: call "
                         f"model(x, context, {index_name})")
    if not isinstance(context, Tensor):
        raise TypeError(f"'context' must be a torch.Tensor "
                        f"(got {type(context).__name__})")
    if not (context.dtype.is_floating_point or context.dtype.is_complex) \
            and context.dim() == 1:
        raise TypeError(f"'context' is a vector of {context.dtype} values, "
                        f"which looks like the set ids: the context comes "
                        f"second, model(x, context, {index_name})")
    if context.dtype != x.dtype:
        raise TypeError(f"'context' is {context.dtype} but 'x' is {x.dtype}; "
                        f"convert with context.to({x.dtype})")
    leading = tuple(x.movedim(dim, -2).shape[:-2])
    if context.dim() < 2 or (context.dim() > 2 and
                             tuple(context.shape[:-2]) != leading):
        raise ValueError(f"'context' must be a matrix [num_sets, "
                         f"context_channels] = [{num_sets}, {shown}] (or "
                         f"with the leading dimensions {leading} of 'x') "
                         f"(got shape {tuple(context.shape)}); for one set "
                         f"use context.view(1, -1)")
    rows = context.size(-2)
    if torch.compiler.is_compiling():
        # A set count read from the ids is not known while tracing: assert
        # it at run time instead of guarding on it.
        torch._check(rows == num_sets)
    elif rows != num_sets:
        raise ValueError(f"'context' has {rows} rows but the batch holds "
                         f"{num_sets} sets; give one context row per set, "
                         f"shape [{num_sets}, {shown}] (pass 'dim_size' when "
                         f"trailing sets are empty, as '{index_name}' alone "
                         f"cannot show them)")
    if channels is not None and context.size(-1) != channels:
        found = ' (found at the first call)' if lazy else ''
        raise ValueError(f"'context' has {context.size(-1)} features but "
                         f"'context_channels' is {channels}{found}")


# Leading dimensions ##########################################################


def fold_leading(x: Tensor, dim: int, index: Tensor, ptr: Optional[Tensor],
                 dim_size: int, context: Optional[Tensor]
                 ) -> Tuple[Tensor, Tensor, Optional[Tensor], int,
                            Optional[Tensor]]:
    r"""Input :math:`[*, N, F]` as the rows of a matrix: the :math:`L`
    slices of the leading dimensions become :math:`L` batches of sets, one
    after the other, so that slice :math:`l`'s set :math:`s` is set
    :math:`lB + s` (exact: slices never mix). A context of shape
    :math:`[B, C]` is shared by all slices."""
    x = x.movedim(dim, -2)
    num_rows, width = x.size(-2), x.size(-1)
    slices = math.prod(x.shape[:-2])
    x = x.reshape(slices * num_rows, width)
    step = torch.arange(slices, device=index.device, dtype=index.dtype)
    index = (step.view(-1, 1) * dim_size + index.view(1, -1)).view(-1)
    if ptr is not None:
        starts = ptr[:-1].view(1, -1) + step.view(-1, 1) * num_rows
        ptr = torch.cat([starts.view(-1), ptr.new_full((1, ),
                                                       slices * num_rows)])
    if context is not None:
        context = (context.repeat(slices, 1) if context.dim() == 2 else
                   context.reshape(-1, context.size(-1)))
    return x, index, ptr, slices * dim_size, context


def unfold_leading(out: Tensor, leading: Tuple[int, ...], dim: int,
                   ndim: int) -> Tensor:
    r"""The output rows of folded input back in the layout of the input:
    :math:`[*, R, F']` with the rows along :obj:`dim` of an
    :obj:`ndim`-dimensional input."""
    out = out.view(leading + (-1, out.size(-1)))
    return out if dim == ndim - 2 else out.movedim(-2, dim)


# The protocol ################################################################


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
_AGGREGATION_DOC = """max_num_elements (int, optional): The most elements of
    a set that aggregations which pad sets (e.g. :obj:`"lstm"`)
    take, as in PyG's :class:`~torch_geometric.nn.aggr.Aggregation`.
    (default: :obj:`None`)"""


def _document_forward(cls: type) -> None:
    r"""Appends the arguments of :obj:`cls`'s family to the docstring of
    the :meth:`forward` it defines."""
    forward = cls.__dict__.get('forward')
    doc = getattr(forward, '__doc__', None)
    if not doc or 'Args:' in doc:
        return
    lines = _SET_ARGS_DOC.format(
        index=cls.index_name,
        index_what=("PyG's :obj:`batch` vector" if cls.index_name == 'index'
                    else "like PyG's :obj:`batch`")).splitlines()
    if cls.takes_context:
        lines[1:1] = _CONTEXT_DOC.splitlines()
    if cls.index_name == 'index':
        lines += _AGGREGATION_DOC.splitlines()
    body = '\n'.join(' ' * 12 + line for line in lines)
    forward.__doc__ = doc.rstrip() + '\n\n        Args:\n' + body + '\n'


_FAMILY = {'index': 'PyG aggregations', 'batch': "PyG's readouts"}


class SetModule(torch.nn.Module):
    r"""Base class of every layer and model of the package: owns the call.

    :meth:`__call__` takes :obj:`(x, [context,] batch=None, ptr=None,
    dim_size=None, dim=-2)` (see the module docstring for the two families),
    validates them, and calls :meth:`forward` with:

    * :obj:`x`, checked against :attr:`in_channels` and the dtype of
      :meth:`input_layer`; input :math:`[*, N, F]` reaches a
      :obj:`folds_leading_dims` class as a matrix whose leading slices are
      extra sets, and its output is laid out like the input again;
    * :obj:`context` (second, for :obj:`takes_context` classes), checked by
      :func:`check_context` against :meth:`context_width`;
    * the set id of every row (unless :obj:`needs_index` is :obj:`False`:
      then :obj:`None` where only :obj:`ptr` came), :obj:`ptr`, the number
      of sets :obj:`dim_size` and a non-negative :obj:`dim`, by keyword.

    A subclass says what differs through the class attributes and hooks
    below, and writes only :meth:`forward`.
    """
    #: The name of the set-id argument: :obj:`"batch"` for set modules,
    #: :obj:`"index"` for aggregations (as in PyG).
    index_name: ClassVar[str] = 'batch'
    #: Whether :meth:`forward` takes a per-set context second.
    takes_context: ClassVar[bool] = False
    #: Whether :meth:`forward` takes the elements as the rows of a matrix
    #: only; the protocol then folds leading dimensions into sets.
    folds_leading_dims: ClassVar[bool] = False
    #: Whether :meth:`forward` needs the set id of every row even where
    #: :obj:`ptr` alone came (most do; pooling alone can run on :obj:`ptr`).
    needs_index: ClassVar[bool] = True

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
        known (:obj:`None` or :obj:`-1` otherwise). Defaults to the
        :obj:`in_channels` attribute."""
        return getattr(self, 'in_channels', None)

    def input_layer(self) -> Optional[torch.nn.Module]:
        r"""The module whose parameters first meet :obj:`x` (for the dtype
        check): :math:`\phi` where the module has one, else the whole
        module."""
        return getattr(self, 'phi', self)

    def context_width(self) -> Optional[int]:
        r"""The context width, where known (:obj:`takes_context` classes)."""
        return None

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
                          lazy=getattr(self, 'context_channels', 0) == -1,
                          index_name=self.index_name)
        if self.needs_index or self.folds_leading_dims:
            index = element_index(x, index, ptr, dim)

        folded = self.folds_leading_dims and x.dim() > 2
        if folded:
            ndim, rows_dim = x.dim(), dim
            leading = x.movedim(dim, -2).shape[:-2]
            x, index, ptr, dim_size, context = fold_leading(
                x, dim, index, ptr, dim_size, context)
            dim = 0
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
        if 'context' in bound and not self.takes_context:
            raise ValueError(f"{cls} takes no 'context'; the models "
                             f"conditioned on a per-set context are "
                             f"DeepSetsConditional and "
                             f"DeepSetsConditionalEquivariant, called as "
                             f"model(x, context, batch)")
        other = 'batch' if self.index_name == 'index' else 'index'
        if other in bound:
            raise TypeError(f"{cls}() names the set ids "
                            f"'{self.index_name}', not '{other}', as "
                            f"{_FAMILY[self.index_name]} do; pass "
                            f"{self.index_name}={other}, or the ids "
                            f"positionally after x")
        return bound


def call_validated(module: SetModule, x: Tensor, index: Tensor,
                   dim_size: int, dim: int = 0) -> Tensor:
    r"""Runs a :class:`SetModule` from inside another one's
    :meth:`~SetModule.forward`, on input the enclosing call validated
    (hooks kept, no second prologue): a stack validates its input once per
    call, not once per layer."""
    return torch.nn.Module.__call__(module, x, index, dim_size=dim_size,
                                    dim=dim)


class SetAggregation(SetModule, Aggregation):
    r"""Base class of the package's aggregations: a :class:`SetModule` that
    is a PyG :class:`~torch_geometric.nn.aggr.Aggregation`, called as
    :obj:`module(x, index=None, ptr=None, dim_size=None, dim=-2)` and giving
    one row per set. Extra keyword arguments PyG passes to aggregations
    (:obj:`max_num_elements`) reach :meth:`forward`."""
    index_name: ClassVar[str] = 'index'
