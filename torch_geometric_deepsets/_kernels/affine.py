r"""The pooled affine layer: sum or mean pooling moved in front of an affine
layer :math:`\mathbf{h} \mapsto \mathbf{h}\mathbf{W}^\top + \mathbf{b}`,

.. math::
    \bigoplus_{i \in s} (\mathbf{h}_i\mathbf{W}^\top + \mathbf{b}) =
    \mathbf{P}_s \mathbf{W}^\top + w_s \mathbf{b},

with :math:`\mathbf{P}_s` the sum (or mean, 0 for an empty set) of the
set's rows and :math:`w_s` the weight of the bias (:func:`bias_weight`):
the set size for the sum, :math:`[n_s > 0]` for the mean. The layer then
runs on :math:`B` pooled rows instead of :math:`N` elements.

Its backward pass (:func:`affine_backward`) has one home, shared by the
autograd function here (eager and device paths) and by the custom operator
of compiled CPU graphs (:mod:`~torch_geometric_deepsets._kernels.custom_ops`).
"""
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric_deepsets._kernels import paths
from torch_geometric_deepsets._kernels.ids import (
    along,
    count_dtype,
    ptr_to_index,
    set_counts,
)
from torch_geometric_deepsets._kernels.sums import segment_sum


def bias_weight(mean: bool, counts: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None,
                dtype: torch.dtype = torch.float32) -> Tensor:
    r"""The weight :math:`w_s` of the bias in the pooled affine layer: the
    set size :math:`n_s` (:obj:`counts`, or the total weight of a set of
    weighted rows) for the sum, :math:`[n_s > 0]` for the mean. A mean
    over :obj:`ptr` on the device path, which needs no set sizes
    otherwise, reads it from :obj:`ptr` (in :obj:`dtype`)."""
    if counts is None:
        return (ptr[1:] != ptr[:-1]).to(dtype)
    return (counts > 0).to(counts.dtype) if mean else counts


def divisors(counts: Tensor) -> Tensor:
    r"""The divisors :math:`\max(n_s, 1)` of a mean, as a column."""
    return counts.clamp(min=1).unsqueeze(-1)


def pooled_rows(h: Tensor, index: Optional[Tensor], ptr: Optional[Tensor],
                dim_size: int, mean: bool, counts: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    r"""The pooled rows :math:`\mathbf{P}` of 2-D :obj:`h`, the bias
    weights :math:`w_s`, and the divisors of a mean over set ids
    (:obj:`None` otherwise); :obj:`counts`, the set sizes, where the caller
    has them."""
    if counts is None and mean and index is None and \
            not paths.host_path(h):
        pooled = torch._segment_reduce(h, 'mean', offsets=ptr, initial=0)
        return pooled, bias_weight(True, ptr=ptr,
                                   dtype=count_dtype(h.dtype)), None
    if counts is None:
        counts = set_counts(index, ptr, dim_size, count_dtype(h.dtype))
    pooled = segment_sum(h, index, ptr, dim_size, counts=counts)
    if not mean:
        return pooled, bias_weight(False, counts), None
    div = divisors(counts)
    return pooled / div.to(h.dtype), bias_weight(True, counts), div


def affine_forward(pooled: Tensor, weight: Tensor, bias: Optional[Tensor],
                   weights: Tensor) -> Tensor:
    r""":math:`\mathbf{P}\mathbf{W}^\top + \mathbf{w}\mathbf{b}^\top` for
    the bias weights :obj:`weights` (:func:`bias_weight`)."""
    out = torch.mm(pooled, weight.t())
    if bias is None:
        return out
    return torch.addr(out, weights.to(out.dtype), bias.to(out.dtype))


def spread(grad_pooled: Tensor, index: Tensor,
           div: Optional[Tensor]) -> Tensor:
    r"""The gradient of the pooled rows sent back to the set's rows (divided
    by the set size for a mean)."""
    if div is not None:
        grad_pooled = grad_pooled / div.to(grad_pooled.dtype)
    return grad_pooled.index_select(0, index)


def affine_backward(needs: Tuple[bool, ...], grad: Tensor, weight: Tensor,
                    weights: Optional[Tensor],
                    to_rows: Callable[[Tensor], Tensor],
                    weight_grad: Callable[[Tensor], Tensor]
                    ) -> Tuple[Optional[Tensor], ...]:
    r"""The gradients of :func:`affine_forward` with respect to the rows
    :math:`\mathbf{h}`, :math:`\mathbf{W}` and :math:`\mathbf{b}` (those
    :obj:`needs` asks for): :obj:`to_rows` sends the pooled rows' gradient
    :math:`\mathbf{G}\mathbf{W}` to the rows, :obj:`weight_grad` gives
    :math:`\mathbf{G}^\top\mathbf{P}`, and the bias gets
    :math:`\mathbf{G}^\top\mathbf{w}` (:obj:`weights` is :obj:`None`
    without a bias)."""
    grad_h = grad_weight = grad_bias = None
    if needs[0]:
        grad_h = to_rows(torch.mm(grad, weight.to(grad.dtype)))
    if needs[1]:
        grad_weight = weight_grad(grad)
    if weights is not None and needs[2]:
        grad_bias = torch.mv(grad.t(), weights.to(grad.dtype))
    return grad_h, grad_weight, grad_bias


class PoolAffine(torch.autograd.Function):
    r"""The pooled affine layer of 2-D rows, with a backward pass of its own
    (:func:`affine_backward`), so that a training step dispatches no more
    operations than the same layer applied before pooling (autograd's
    formulas for this expression take more)."""
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Optional[Tensor],
                index: Optional[Tensor], ptr: Optional[Tensor],
                dim_size: int, mean: bool) -> Tensor:
        pooled, weights, div = pooled_rows(h, index, ptr, dim_size, mean)
        ctx.save_for_backward(h, weight, pooled, weights, div, index, ptr)
        ctx.mean = mean
        ctx.has_bias = bias is not None
        return affine_forward(pooled, weight, bias, weights)

    @staticmethod
    def backward(ctx, grad: Tensor):
        h, weight, pooled, weights, div, index, ptr = ctx.saved_tensors
        mean = ctx.mean
        if torch.is_grad_enabled():
            # Differentiating this backward pass (create_graph=True) needs
            # the pooled rows as a function of h, not as a saved constant,
            # and a gather that has a derivative itself.
            pooled = pooled_rows(h, index, ptr, pooled.size(0), mean)[0]
            if index is None:
                index = ptr_to_index(ptr, h.size(0))
                if mean:
                    div = divisors(set_counts(None, ptr, pooled.size(0),
                                              grad.dtype))

        def to_rows(grad_pooled: Tensor) -> Tensor:
            if index is None:
                return torch.ops.aten._segment_reduce_backward(
                    grad_pooled, pooled, h, 'mean' if mean else 'sum',
                    offsets=ptr, axis=0, initial=0)
            return spread(grad_pooled, index, div)

        grads = affine_backward(
            ctx.needs_input_grad, grad, weight,
            weights if ctx.has_bias else None, to_rows,
            lambda g: torch.mm(g.t(), pooled.to(g.dtype)))
        return (*grads, None, None, None, None)


def pool_affine_nd(h: Tensor, weight: Tensor, bias: Optional[Tensor],
                   index: Optional[Tensor], ptr: Optional[Tensor],
                   dim_size: int, mean: bool, dim: int) -> Tensor:
    r"""The pooled affine layer for rows along any :obj:`dim` of
    :obj:`h` (plain operations with autograd's formulas)."""
    counts = set_counts(index, ptr, dim_size, count_dtype(h.dtype))
    pooled = segment_sum(h, index, ptr, dim_size, dim, counts=counts)
    if mean:
        pooled = pooled / along(counts.clamp(min=1), dim, h.dim()).to(
            h.dtype)
    out = F.linear(pooled, weight)
    if bias is None:
        return out
    return torch.addcmul(out, along(bias_weight(mean, counts), dim,
                                    out.dim()).to(out.dtype), bias)
