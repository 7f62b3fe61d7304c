r"""Checks of permutation symmetry for users' own set models, in the spirit of
:mod:`e3nn.util.test`: a function that measures the error and assertions that
raise with it.

A model is called as :obj:`module(x, batch, dim_size=B, **set_inputs,
**element_inputs)`, with :obj:`batch` passed by keyword when the model's
:meth:`forward` names it :obj:`batch` (and as :obj:`index` for PyG
aggregations). Any callable with that signature works.
"""
import inspect
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric_deepsets.grouping import resolve_sets

__all__ = ['assert_permutation_invariant', 'assert_permutation_equivariant',
           'permutation_error', 'random_set_permutation', 'TOLERANCES',
           'relative_error', 'RELATIVE_TOLERANCES']

#: Default :obj:`(atol, rtol)` per dtype; float32 is loose enough for the
#: reordered sums of scatter reductions over a few thousand rows.
TOLERANCES: Dict[torch.dtype, Tuple[float, float]] = {
    torch.float64: (1e-9, 1e-7),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (2e-2, 2e-2),
    torch.bfloat16: (5e-2, 5e-2),
}

#: Largest :func:`relative_error` of a model run in a dtype against the same
#: model (same weights, same inputs) run in float32: half precisions round
#: every product and sum, and a float64 run differs by the float32 run's own
#: rounding. Loose enough for models of a few layers on sets of a few to a
#: few thousand rows; gradients, which compound one more pass of rounding,
#: take twice these.
RELATIVE_TOLERANCES: Dict[torch.dtype, float] = {
    torch.float64: 1e-5,
    torch.float16: 3e-2,
    torch.bfloat16: 1e-1,
}


def relative_error(actual: Tensor, expected: Tensor) -> float:
    r"""The largest absolute difference of :obj:`actual` and
    :obj:`expected`, relative to the largest absolute entry of
    :obj:`expected` (at least :obj:`1e-3`), computed in float32: the
    measure of :data:`RELATIVE_TOLERANCES`."""
    actual, expected = actual.detach().float(), expected.detach().float()
    return float((actual - expected).abs().max() /
                 expected.abs().max().clamp(min=1e-3))


def _call(module: Callable, x: Tensor, batch: Tensor, dim_size: int,
          kwargs: Dict[str, Tensor]) -> Tensor:
    forward = module.forward if isinstance(module, torch.nn.Module) \
        else module
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        params = {}
    key = 'index' if 'index' in params and 'batch' not in params else 'batch'
    return module(x, **{key: batch}, dim_size=dim_size, **kwargs)


def random_set_permutation(
    batch: Tensor, dim_size: int, generator: Optional[torch.Generator] = None
) -> Tuple[Tensor, Tensor]:
    r"""A random reordering of a batch of sets: the order of the sets and the
    order of the elements inside each set are both shuffled.

    Returns:
        :obj:`(perm, set_perm)`: new row :math:`k` is old row
        :obj:`perm[k]`, and old set :math:`s` becomes set :obj:`set_perm[s]`.
        The new batch vector :obj:`set_perm[batch[perm]]` is sorted.
    """
    set_perm = torch.randperm(dim_size, generator=generator).to(batch.device)
    noise = torch.rand(batch.numel(), generator=generator,
                       dtype=torch.float64).to(batch.device)
    # Sort by new set id, ties broken by random keys: shuffles within sets.
    key = set_perm[batch].to(torch.float64) + noise
    return torch.argsort(key), set_perm


def permutation_error(
    module: Callable,
    x: Tensor,
    batch: Optional[Tensor] = None,
    dim_size: Optional[int] = None,
    equivariant: bool = False,
    set_inputs: Optional[Dict[str, Tensor]] = None,
    element_inputs: Optional[Dict[str, Tensor]] = None,
    num_trials: int = 3,
    generator: Optional[torch.Generator] = None,
) -> float:
    r"""The largest absolute difference, over :obj:`num_trials` random
    reorderings (:func:`random_set_permutation`), between the model's output
    on reordered input and its reordered output on the original input.

    Args:
        module (callable): The model under test.
        x (torch.Tensor): Element features :math:`(N, F)`.
        batch (torch.Tensor, optional): Set ids :math:`(N)`; :obj:`None` is
            one set. (default: :obj:`None`)
        dim_size (int, optional): Number of sets. (default: :obj:`None`)
        equivariant (bool, optional): Compare per-element outputs (reordered
            like the rows) instead of per-set outputs (reordered like the
            sets). (default: :obj:`False`)
        set_inputs (dict, optional): Extra keyword inputs with one row per
            set, e.g. :obj:`{"context": z}`. (default: :obj:`None`)
        element_inputs (dict, optional): Extra keyword inputs with one row
            per element. (default: :obj:`None`)
        num_trials (int, optional): Number of random reorderings.
            (default: :obj:`3`)
        generator (torch.Generator, optional): Source of randomness.
            (default: :obj:`None`)
    """
    set_inputs = dict(set_inputs or {})
    if dim_size is None and batch is not None and set_inputs:
        # Trailing empty sets are only visible in the per-set inputs.
        dim_size = next(iter(set_inputs.values())).size(0)
    batch, _, dim_size, _ = resolve_sets(x, batch, None, dim_size)
    element_inputs = dict(element_inputs or {})
    for name, value in set_inputs.items():
        if value.size(0) != dim_size:
            raise ValueError(f"set input '{name}' has {value.size(0)} rows "
                             f"but there are {dim_size} sets")
    for name, value in element_inputs.items():
        if value.size(0) != x.size(0):
            raise ValueError(f"element input '{name}' has {value.size(0)} "
                             f"rows but 'x' has {x.size(0)}")

    with torch.no_grad():
        return _error(module, x, batch, dim_size, equivariant, set_inputs,
                      element_inputs, num_trials, generator)


def _error(module: Callable, x: Tensor, batch: Tensor, dim_size: int,
           equivariant: bool, set_inputs: Dict[str, Tensor],
           element_inputs: Dict[str, Tensor], num_trials: int,
           generator: Optional[torch.Generator]) -> float:
    out = _call(module, x, batch, dim_size, {**set_inputs, **element_inputs})
    error = 0.0
    for _ in range(num_trials):
        perm, set_perm = random_set_permutation(batch, dim_size, generator)
        inverse = torch.empty_like(set_perm)
        inverse[set_perm] = torch.arange(dim_size, device=set_perm.device)
        kwargs: Dict[str, Any] = {
            name: value[inverse] for name, value in set_inputs.items()
        }
        kwargs.update({n: v[perm] for n, v in element_inputs.items()})
        new_out = _call(module, x[perm], set_perm[batch[perm]], dim_size,
                        kwargs)
        expected = out[perm] if equivariant else out[inverse]
        if new_out.shape != expected.shape:
            raise AssertionError(f"output shape changed under permutation: "
                                 f"{tuple(expected.shape)} -> "
                                 f"{tuple(new_out.shape)}")
        diff = (new_out - expected).abs()
        if diff.numel() > 0:
            error = max(error, float(diff.nan_to_num(float('inf')).max()))
    return error


def _assert(kind: str, module: Callable, x: Tensor, batch: Optional[Tensor],
            atol: Optional[float], rtol: Optional[float],
            kwargs: Dict[str, Any]) -> float:
    default_atol, default_rtol = TOLERANCES.get(x.dtype, (1e-4, 1e-4))
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    error = permutation_error(module, x, batch,
                              equivariant=kind == 'equivariant', **kwargs)
    scale = float(x.abs().max()) if x.numel() > 0 else 0.0
    bound = atol + rtol * scale
    if not error <= bound:
        raise AssertionError(f"{type(module).__name__} is not permutation "
                             f"{kind}: max error {error:.3g} exceeds "
                             f"{bound:.3g} (atol={atol}, rtol={rtol}, "
                             f"dtype={x.dtype})")
    return error


def assert_permutation_invariant(module: Callable, x: Tensor,
                                 batch: Optional[Tensor] = None,
                                 atol: Optional[float] = None,
                                 rtol: Optional[float] = None,
                                 **kwargs: Any) -> float:
    r"""Asserts that the per-set output of :obj:`module` does not change when
    the elements within each set, and the sets within the batch, are
    reordered. Returns the measured error; raises :class:`AssertionError`
    with it when it exceeds :obj:`atol + rtol * max|x|` (defaults by dtype,
    :data:`TOLERANCES`). Further keyword arguments go to
    :func:`permutation_error`."""
    return _assert('invariant', module, x, batch, atol, rtol, kwargs)


def assert_permutation_equivariant(module: Callable, x: Tensor,
                                   batch: Optional[Tensor] = None,
                                   atol: Optional[float] = None,
                                   rtol: Optional[float] = None,
                                   **kwargs: Any) -> float:
    r"""Asserts that reordering elements (within and across sets) reorders
    the per-element output of :obj:`module` the same way; otherwise like
    :func:`assert_permutation_invariant`."""
    return _assert('equivariant', module, x, batch, atol, rtol, kwargs)
