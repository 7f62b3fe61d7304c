r"""Input :math:`[*, N, F]` with leading dimensions, for modules that take
the elements as the rows of a matrix: each leading slice is its own batch of
sets (:func:`fold_leading`), and the output is laid out like the input
again (:func:`unfold_leading`)."""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor


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
