r"""Argument checks shared by every layer, model and dataset: each raises a
:class:`TypeError` (wrong type) or :class:`ValueError` (wrong value) that
names the argument, what came, and what to do instead.

Checks that read tensor *values* run only where
:func:`value_checks_enabled` says, so that none of them synchronises a GPU
outside :class:`torch_geometric.debug`.
"""
import numbers
from typing import Any, Optional, Tuple

import torch
from torch import Tensor

import torch_geometric
from torch_geometric_deepsets._kernels import paths, ptr_to_index


def value_checks_enabled(tensor: Tensor) -> bool:
    r"""Whether checks that read tensor *values* run: on the host path
    (eager CPU, see
    :func:`~torch_geometric_deepsets._kernels.paths.host_path`),
    where they cost no device synchronisation, and under
    :class:`torch_geometric.debug` on other devices. Compiled graphs never
    run them: they cannot branch on data.
    """
    return paths.host_path(tensor) or (
        torch_geometric.is_debug_enabled()
        and not torch.compiler.is_compiling())


def is_int(value: Any) -> bool:
    r"""Whether :obj:`value` is an integer (a Python or NumPy integer), not
    a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    r"""Whether :obj:`value` is a real number (an integer or a float), not
    a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int = 1,
              maximum: Optional[int] = None, lazy: bool = False,
              bound: Optional[str] = None) -> int:
    r"""Returns :obj:`value` as an :obj:`int` if it is an integer (a Python
    or NumPy integer, not a bool) in :obj:`[minimum, maximum]`, or :obj:`-1`
    for a :obj:`lazy` width (found at the first call). A symbolic integer
    (a size traced by :func:`torch.compile`) is returned as it is.
    :obj:`bound` words the bounds in the messages, where the default
    wording does not fit.

    Raises:
        TypeError: if :obj:`value` is not an integer.
        ValueError: if it lies outside the bounds.
    """
    if isinstance(value, torch.SymInt):
        return value
    if bound is None and maximum is not None:
        bound = f'an int in [{minimum}, {maximum}]'
    elif bound is None:
        bound = {0: 'a non-negative int', 1: 'a positive int'}.get(
            minimum, f'an int >= {minimum}')
    hint = ', or -1 to find it at the first call' if lazy else ''
    if not is_int(value):
        raise TypeError(f"'{name}' must be {bound}{hint} "
                        f"(got {type(value).__name__} {value!r})")
    value = int(value)
    if not (lazy and value == -1) and (
            value < minimum or (maximum is not None and value > maximum)):
        raise ValueError(f"'{name}' must be {bound}{hint} (got {value!r})")
    return value


def check_dropout(dropout: Any, name: str = 'dropout') -> None:
    r"""Raises unless :obj:`dropout` is a probability in :math:`[0, 1)`."""
    if not is_real(dropout) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"'{name}' must lie in [0, 1) (got {dropout!r})")


def check_integer_vector(name: str, value: Any) -> None:
    r"""Raises unless :obj:`value` is a one-dimensional integer tensor (set
    ids or row boundaries)."""
    if not isinstance(value, Tensor):
        hint = ''
        if name == 'ptr' and isinstance(value, int):
            hint = ("; to give the number of sets, as in "
                    "global_add_pool(x, batch, size), pass dim_size=")
        raise TypeError(f"'{name}' must be a torch.Tensor (got "
                        f"{type(value).__name__}){hint}")
    if value.dtype == torch.bool:
        raise TypeError(f"'{name}' is a boolean tensor of shape "
                        f"{tuple(value.shape)}, which looks like a padding "
                        f"mask; set ids are integers, one per row: turn "
                        f"padded sets and their mask into rows with "
                        f"from_dense(x, mask) and pass its batch (or ptr)")
    if value.dtype.is_floating_point or value.dtype.is_complex:
        hint = ''
        if name != 'ptr' and value.dim() == 2:
            hint = ("; a float matrix here looks like a per-set context: "
                    "models that take one are called as "
                    "model(x, context, batch)")
        raise TypeError(f"'{name}' must be an integer tensor "
                        f"(got dtype {value.dtype}){hint}")
    if value.dim() != 1:
        raise ValueError(f"'{name}' must be one-dimensional "
                         f"(got shape {tuple(value.shape)})")


def check_x(x: Any, name: str = 'x', channels: Optional[int] = None,
            dim: int = -2, any_dim: bool = False,
            matrix: bool = False) -> int:
    r"""Raises unless :obj:`x` is a tensor of at least two dimensions (two
    exactly with :obj:`matrix`) whose
    last one (the features) has :obj:`channels` entries, where given, and
    :obj:`dim` a dimension of it, other than the last unless :obj:`any_dim`
    (pooling alone may run along the last dimension, as PyG's aggregations
    do). Returns :obj:`dim` as a non-negative number."""
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
    if not is_int(dim):
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
    return int(dim) % x.dim()


def check_dtype(x: Tensor, module: Optional[torch.nn.Module]) -> None:
    r"""Raises a :class:`TypeError` that says what to convert when :obj:`x`
    cannot enter :obj:`module`: integers into a first layer that is not an
    embedding, or floats of another precision than the parameters (outside
    :func:`torch.autocast`)."""
    if module is None:
        return
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


# Set ids and row boundaries ##################################################


def check_dim_size(dim_size: Any) -> int:
    r"""Raises unless :obj:`dim_size`, the number of sets, is an int
    :math:`\geq 0`."""
    return check_int('dim_size', dim_size, minimum=0, bound='an int >= 0')


def check_set_ids(name: str, index: Any, x: Tensor, dim: int) -> None:
    r"""Raises unless :obj:`index` is an integer vector with one set id per
    row of :obj:`x` along :obj:`dim`, on the device of :obj:`x`."""
    check_integer_vector(name, index)
    num_rows = x.size(dim)
    if index.numel() != num_rows:
        raise ValueError(f"'{name}' has {index.numel()} entries but 'x' has "
                         f"{num_rows} rows along dim {dim}; they must match")
    if index.device != x.device:
        raise ValueError(f"'{name}' is on {index.device} but 'x' is on "
                         f"{x.device}")


def check_ptr(ptr: Any, x: Tensor, dim_size: Optional[int]) -> int:
    r"""Raises unless :obj:`ptr` is an integer vector of at least one entry
    on the device of :obj:`x` that agrees with :obj:`dim_size` (where
    given); returns the number of sets it describes."""
    check_integer_vector('ptr', ptr)
    if ptr.numel() < 1:
        raise ValueError("'ptr' must hold at least one entry (ptr[0] = 0)")
    if ptr.device != x.device:
        raise ValueError(f"'ptr' is on {ptr.device} but 'x' is on "
                         f"{x.device}")
    num_sets = ptr.numel() - 1
    if dim_size is not None and dim_size != num_sets:
        raise ValueError(f"'dim_size' is {dim_size} but 'ptr' has "
                         f"{ptr.numel()} entries, i.e. {num_sets} sets")
    return num_sets


def check_id_range(name: str, lo: int, hi: int,
                   dim_size: Optional[int]) -> None:
    r"""Raises unless the set ids in :math:`[lo, hi]` are non-negative and
    below :obj:`dim_size` (where given)."""
    if lo < 0:
        raise ValueError(f"'{name}' holds the negative set id {lo}; set ids "
                         f"must be 0, 1, ..., B - 1 (relabel arbitrary ids "
                         f"with torch.unique({name}, return_inverse=True)[1])")
    if dim_size is not None and hi >= dim_size:
        raise ValueError(f"'{name}' holds set ids in [{lo}, {hi}] but "
                         f"'dim_size' is {dim_size}; ids must lie in "
                         f"[0, {dim_size - 1}] (pass dim_size={hi + 1} or "
                         f"more, or leave it out)")


def id_range(index: Tensor) -> Tuple[int, int]:
    r"""The smallest and largest set id of a non-empty :obj:`index`, in
    one read."""
    lo, hi = torch.stack(torch.aminmax(index)).tolist()
    return lo, hi


def check_ptr_values(ptr: Tensor, num_rows: int, index: Optional[Tensor],
                     index_name: str) -> None:
    r"""Raises unless :obj:`ptr` starts at 0, ends at :obj:`num_rows`, never
    decreases and, where :obj:`index` is given too, describes its sets
    (reads values)."""
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


# Per-element weights ########################################################

#: The integer dtypes a weight may have (counts of copies).
INTEGERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def check_weight(weight: Any, x: Tensor, dim: int) -> None:
    r"""Raises unless :obj:`weight` holds one real, non-negative weight per
    element of :obj:`x` (rows along :obj:`dim`, non-negative): shape
    :math:`[N]`, or the shape of :obj:`x` without its features (a weight per
    element of every leading slice), on the device of :obj:`x`. Negative
    weights are found wherever :func:`value_checks_enabled` says."""
    if not isinstance(weight, Tensor):
        raise TypeError(f"'weight' must be a torch.Tensor of per-element "
                        f"weights (got {type(weight).__name__})")
    if weight.dtype == torch.bool:
        raise TypeError("'weight' is a boolean tensor, which looks like a "
                        "mask: pass weight=mask.to(x.dtype) to weigh masked "
                        "elements 0, or drop them (for padded sets, "
                        "from_dense(x, mask))")
    if not (weight.dtype.is_floating_point or weight.dtype in INTEGERS):
        raise TypeError(f"'weight' must hold real numbers, float or integer "
                        f"(got dtype {weight.dtype})")
    num_rows = x.size(dim)
    elements = tuple(x.shape[:-1])
    if tuple(weight.shape) not in ((num_rows, ), elements):
        also = '' if len(elements) == 1 else f' or {list(elements)}'
        raise ValueError(f"'weight' has shape {tuple(weight.shape)} but 'x' "
                         f"has shape {tuple(x.shape)} with {num_rows} "
                         f"elements along dim {dim}; give one weight per "
                         f"element: shape [{num_rows}]{also}")
    if weight.device != x.device:
        raise ValueError(f"'weight' is on {weight.device} but 'x' is on "
                         f"{x.device}")
    if weight.numel() > 0 and value_checks_enabled(weight):
        low = weight.min().item()
        if low < 0:
            raise ValueError(f"'weight' holds the negative weight {low}; a "
                             f"weight counts copies of its element (0: "
                             f"absent) and must be >= 0")


# The context of conditioned models ##########################################


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
