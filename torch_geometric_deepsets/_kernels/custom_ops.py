r"""The custom operators (:func:`torch.library.custom_op`) that compiled CPU
graphs call for max/min pooling and the pooled affine layer (see
:func:`~torch_geometric_deepsets._kernels.paths.cpu_graph`).

Each operator's kernel is the host path's eager code (inductor calls it at
run time on the host), its fake implementation gives the output shapes for
tracing, and its autograd formula is the one the eager path uses:
:func:`~torch_geometric_deepsets._kernels.extremes.extreme_backward` and
:func:`~torch_geometric_deepsets._kernels.affine.affine_backward`. The
backward passes take the pooled input :math:`\mathbf{h}` itself, which keeps
:math:`\mathbf{h}`, not a boolean ReLU mask, for the backward pass.

Imported only where torch has :func:`torch.library.custom_op`
(:data:`~torch_geometric_deepsets._kernels.dispatch.CUSTOM_OPS`); elsewhere
compiled CPU graphs take the device path.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from torch_geometric_deepsets._kernels.affine import (
    affine_backward,
    affine_forward,
    bias_weight,
    divisors,
    pooled_rows,
    spread,
)
from torch_geometric_deepsets._kernels.extremes import (
    extreme_backward,
    scatter_extreme,
)
from torch_geometric_deepsets._kernels.ids import count_dtype


def _counts(index: Tensor, dim_size: int, dtype: torch.dtype) -> Tensor:
    # bincount: the same counts as PyG's degree, in fewer operations; its
    # length depends on data, which is allowed at run time on the host.
    return torch.bincount(index, minlength=dim_size).to(count_dtype(dtype))


@torch.library.custom_op('torch_geometric_deepsets::segment_extreme',
                         mutates_args=())
def segment_extreme(x: Tensor, index: Tensor, dim_size: int,
                    reduce: str) -> Tensor:
    r"""The per-set maximum or minimum of the rows of 2-D :obj:`x`."""
    return scatter_extreme(x, index, dim_size, 0, reduce)


@segment_extreme.register_fake
def _(x: Tensor, index: Tensor, dim_size: int, reduce: str) -> Tensor:
    return x.new_empty(dim_size, x.size(1))


@torch.library.custom_op('torch_geometric_deepsets::segment_extreme_backward',
                         mutates_args=())
def segment_extreme_backward(grad: Tensor, x: Tensor, index: Tensor,
                             out: Tensor) -> Tensor:
    r"""Its gradient: at run time the host path's blocked backward."""
    return extreme_backward(grad, x, index, out, 0)


@segment_extreme_backward.register_fake
def _(grad: Tensor, x: Tensor, index: Tensor, out: Tensor) -> Tensor:
    return torch.empty_like(x)


def _extreme_setup(ctx, inputs, output) -> None:
    x, index, _, _ = inputs
    ctx.save_for_backward(x, index, output)


def _extreme_grad(ctx, grad: Tensor):
    x, index, out = ctx.saved_tensors
    return segment_extreme_backward(grad, x, index, out), None, None, None


segment_extreme.register_autograd(_extreme_grad,
                                  setup_context=_extreme_setup)


@torch.library.custom_op('torch_geometric_deepsets::pool_affine',
                         mutates_args=())
def pool_affine(h: Tensor, weight: Tensor, bias: Optional[Tensor],
                index: Tensor, dim_size: int, mean: bool
                ) -> Tuple[Tensor, Tensor]:
    r"""The pooled affine layer of 2-D rows, with the set sizes as a
    second output."""
    counts = _counts(index, dim_size, h.dtype)
    pooled, weights, _ = pooled_rows(h, index, None, dim_size, mean,
                                     counts)
    return affine_forward(pooled, weight, bias, weights), counts


@pool_affine.register_fake
def _(h: Tensor, weight: Tensor, bias: Optional[Tensor], index: Tensor,
      dim_size: int, mean: bool) -> Tuple[Tensor, Tensor]:
    return (h.new_empty(dim_size, weight.size(0)),
            h.new_empty(dim_size, dtype=count_dtype(h.dtype)))


@torch.library.custom_op('torch_geometric_deepsets::pool_affine_weight_grad',
                         mutates_args=())
def pool_affine_weight_grad(grad: Tensor, h: Tensor, index: Tensor,
                            counts: Tensor, mean: bool) -> Tensor:
    r"""The weight gradient :math:`\mathbf{G}^\top\mathbf{P}`, with the
    pooled rows computed again from :obj:`h` rather than saved."""
    pooled = pooled_rows(h, index, None, counts.size(0), mean, counts)[0]
    return torch.mm(grad.t(), pooled.to(grad.dtype))


@pool_affine_weight_grad.register_fake
def _(grad: Tensor, h: Tensor, index: Tensor, counts: Tensor,
      mean: bool) -> Tensor:
    return grad.new_empty(grad.size(1), h.size(1))


def _affine_setup(ctx, inputs, output) -> None:
    h, weight, bias, index, _, mean = inputs
    ctx.save_for_backward(h, weight, index, output[1])
    ctx.mean = mean
    ctx.has_bias = bias is not None


def _affine_grad(ctx, grad: Tensor, _):
    # Everything but the weight gradient is traced, so that inductor
    # fuses the gather of the input gradient into the ReLU backward.
    h, weight, index, counts = ctx.saved_tensors
    mean = ctx.mean
    grads = affine_backward(
        ctx.needs_input_grad, grad, weight,
        bias_weight(mean, counts) if ctx.has_bias else None,
        lambda g: spread(g, index, divisors(counts) if mean else None),
        lambda g: pool_affine_weight_grad(g, h, index, counts, mean))
    return (*grads, None, None, None)


pool_affine.register_autograd(_affine_grad, setup_context=_affine_setup)
