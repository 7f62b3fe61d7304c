r"""Argument checks shared by every layer, model and dataset: each raises a
:class:`TypeError` (wrong type) or :class:`ValueError` (wrong value) that
names the argument, what came, and what to do instead.

Checks that read tensor *values* run only where
:func:`value_checks_enabled` says, so that none of them synchronises a GPU
outside :class:`torch_geometric.debug`.
"""
import numbers
from typing import Any, Optional

import torch
from torch import Tensor

import torch_geometric
from torch_geometric_deepsets import _kernels


def value_checks_enabled(tensor: Tensor) -> bool:
    r"""Whether checks that read tensor *values* run: on the host path
    (eager CPU, see :func:`~torch_geometric_deepsets._kernels.host_path`),
    where they cost no device synchronisation, and under
    :class:`torch_geometric.debug` on other devices. Compiled graphs never
    run them: they cannot branch on data.
    """
    return _kernels.host_path(tensor) or (
        torch_geometric.is_debug_enabled()
        and not torch.compiler.is_compiling())


def check_int(name: str, value: Any, minimum: int = 1,
              maximum: Optional[int] = None, lazy: bool = False) -> int:
    r"""Returns :obj:`value` as an :obj:`int` if it is an integer (a Python
    or NumPy integer, not a bool) in :obj:`[minimum, maximum]`, or :obj:`-1`
    for a :obj:`lazy` width (found at the first call).

    Raises:
        TypeError: if :obj:`value` is not an integer.
        ValueError: if it lies outside the bounds.
    """
    if maximum is not None:
        bound = f'an int in [{minimum}, {maximum}]'
    else:
        bound = {0: 'a non-negative int', 1: 'a positive int'}.get(
            minimum, f'an int >= {minimum}')
    hint = ', or -1 to find it at the first call' if lazy else ''
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"'{name}' must be {bound}{hint} "
                        f"(got {type(value).__name__} {value!r})")
    value = int(value)
    if not (lazy and value == -1) and (
            value < minimum or (maximum is not None and value > maximum)):
        raise ValueError(f"'{name}' must be {bound}{hint} (got {value!r})")
    return value


def check_dropout(dropout: Any, name: str = 'dropout') -> None:
    r"""Raises unless :obj:`dropout` is a probability in :math:`[0, 1)`."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0.0 <= dropout < 1.0:
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
    if value.dtype.is_floating_point or value.dtype.is_complex or \
            value.dtype == torch.bool:
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
