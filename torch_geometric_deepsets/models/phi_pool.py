r"""Pooling moved in front of :math:`\phi`'s last affine layer: for sum and
mean, :math:`\bigoplus_i (\mathbf{h}_i\mathbf{W} + \mathbf{b})` is computed
as :math:`(\bigoplus_i \mathbf{h}_i)\mathbf{W}` plus the pooled bias, on the
:math:`B` pooled rows instead of the :math:`N` elements."""
from typing import Optional

import torch
from torch import Tensor

from torch_geometric.nn.aggr import (
    Aggregation,
    MeanAggregation,
    SumAggregation,
)
from torch_geometric_deepsets._kernels import pool_affine
from torch_geometric_deepsets._kernels.weighted import pool_affine_weighted
from torch_geometric_deepsets.grouping import element_weights
from torch_geometric_deepsets.models.mlp import SplitMLP, run
from torch_geometric_deepsets.models.relu_stack import global_hooks, hooked
from torch_geometric_deepsets.models.widths import AFFINE
from torch_geometric_deepsets.pool import apply_aggr


def affine_last(phi: torch.nn.Module) -> Optional[torch.nn.Module]:
    r"""The last layer of :obj:`phi` when it is affine and pooling may move
    in front of it: the :obj:`lin` of a :class:`SplitMLP` (a channel list),
    or the last module of a :class:`torch.nn.Sequential`, where :obj:`phi`'s
    own :meth:`forward` is its class's, and the layer is exactly a
    :class:`torch.nn.Linear` or PyG :class:`Linear` (not a subclass, whose
    :meth:`forward` may do more) with initialised parameters. Calling
    :obj:`phi` must do nothing more than its layers: no hooks on it or on
    the layer, no :meth:`forward` replaced on either, no global hooks
    (``tests/models/test_phi_pool.py``); otherwise :obj:`phi` runs as a
    module and its output is pooled."""
    if type(phi).forward is SplitMLP.forward and isinstance(phi, SplitMLP):
        lin = phi.lin
    elif isinstance(phi, torch.nn.Sequential) and len(phi) > 0 and \
            type(phi).forward is torch.nn.Sequential.forward:
        lin = phi[-1]
    else:
        return None
    if type(lin) not in AFFINE:
        return None
    if hooked(phi) or hooked(lin) or global_hooks():
        return None
    if isinstance(lin.weight, torch.nn.parameter.UninitializedParameter):
        return None  # lazy: the first call through lin initialises it
    return lin


def _hidden(phi: torch.nn.Module, x: Tensor, index: Optional[Tensor],
            ptr: Optional[Tensor], dim_size: int, dim: int) -> Tensor:
    if isinstance(phi, SplitMLP):
        if phi.body is None:
            return x
        return run(phi.body, x, index, ptr, dim_size, dim)
    for module in phi[:-1]:
        x = module(x)
    return x


def fused_reduce(phi: torch.nn.Module, aggr: Aggregation) -> Optional[str]:
    r"""The reduction (:obj:`"sum"` or :obj:`"mean"`) that moves in front of
    :obj:`phi`'s last layer, or :obj:`None` if the rewrite does not apply."""
    if type(aggr) is SumAggregation:
        reduce = 'sum'
    elif type(aggr) is MeanAggregation:
        reduce = 'mean'
    else:
        return None
    return reduce if affine_last(phi) is not None else None


def phi_pool(phi: torch.nn.Module, aggr: Aggregation, x: Tensor,
             index: Optional[Tensor], ptr: Optional[Tensor], dim_size: int,
             dim: int, max_num_elements: Optional[int] = None,
             weight: Optional[Tensor] = None) -> Tensor:
    r""":math:`\bigoplus_{i \in s} \phi(\mathbf{x}_i)` for every set
    :math:`s` (:obj:`max_num_elements` and :obj:`weight` as in
    :func:`~torch_geometric_deepsets.pool.apply_aggr`).

    For sum and mean pooling after a :math:`\phi` whose last layer is
    affine (see :func:`affine_last`), pools before that layer and applies
    it to the :math:`B` pooled rows instead of the :math:`N` elements
    (:func:`~torch_geometric_deepsets._kernels.pool_affine`): exact in
    arithmetic, an :math:`N/B`-fold saving on that layer (unless the
    elements lie along the last dimension).
    """
    # Along the last dimension the affine layer would mix the elements.
    reduce = fused_reduce(phi, aggr) if dim < x.dim() - 1 else None
    if reduce is None:
        h = run(phi, x, index, ptr, dim_size, dim)
        return apply_aggr(aggr, h, index, ptr, dim_size, dim,
                          max_num_elements, weight)
    lin = affine_last(phi)
    assert lin is not None
    h = _hidden(phi, x, index, ptr, dim_size, dim)
    if weight is not None:
        return pool_affine_weighted(h, lin.weight, lin.bias, index, ptr,
                                    dim_size, reduce == 'mean', dim,
                                    element_weights(weight, h, dim))
    return pool_affine(h, lin.weight, lin.bias, index, ptr, dim_size, reduce,
                       dim)
