from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric.nn import MLP
from torch_geometric.nn.aggr import (
    Aggregation,
    MeanAggregation,
    SumAggregation,
)
from torch_geometric.nn.dense.linear import Linear as PygLinear
from torch_geometric_deepsets.pool import apply_aggr, set_sizes

ModuleSpec = Union[Sequence[int], torch.nn.Module]


def build_mlp(spec: ModuleSpec, name: str, act: Union[str, torch.nn.Module,
                                                      None] = 'relu',
              norm: Optional[str] = None, dropout: float = 0.0,
              extra_in_channels: int = 0) -> torch.nn.Module:
    r"""A module from :obj:`spec`: a channel list becomes a
    :class:`torch_geometric.nn.MLP` (no normalisation unless asked, since
    PyG's default batch norm would make one set's output depend on the
    other sets of a training batch); a module is used as it is."""
    if isinstance(spec, torch.nn.Module):
        return spec
    if isinstance(spec, (list, tuple)):
        if len(spec) < 2 or not all(
                isinstance(c, int) and not isinstance(c, bool) and c > 0
                for c in spec):
            raise ValueError(f"'{name}' as a channel list needs at least "
                             f"two positive ints [in, ..., out] "
                             f"(got {list(spec)})")
        channels: List[int] = list(spec)
        channels[0] += extra_in_channels
        return MLP(channels, act=act, norm=norm, dropout=dropout)
    raise TypeError(f"'{name}' must be a list of channels or a "
                    f"torch.nn.Module (got {type(spec).__name__})")


def in_channels_of(module: torch.nn.Module) -> Optional[int]:
    r"""Input width of :obj:`module` where it is known (-1: lazy)."""
    if isinstance(module, MLP):
        return module.in_channels
    if isinstance(module, torch.nn.Linear):
        return module.in_features
    if isinstance(module, PygLinear):
        return module.in_channels
    if isinstance(module, torch.nn.Sequential) and len(module) > 0:
        return in_channels_of(module[0])
    return None


def out_channels_of(module: torch.nn.Module) -> Optional[int]:
    r"""Output width of :obj:`module` where it is known."""
    if isinstance(module, MLP):
        return module.out_channels
    if isinstance(module, torch.nn.Linear):
        return module.out_features
    if isinstance(module, PygLinear):
        return module.out_channels
    if isinstance(module, torch.nn.Sequential) and len(module) > 0:
        return out_channels_of(module[-1])
    return None


def run_mlp(mlp: MLP, x: Tensor, batch: Optional[Tensor],
            batch_size: Optional[int], scale: Optional[Tensor] = None,
            shift: Optional[Tensor] = None, skip_last: bool = False) -> Tensor:
    r"""Runs a PyG :class:`MLP` like its own :meth:`forward`, with two hooks
    :meth:`MLP.forward` lacks: a FiLM modulation :math:`\mathbf{h} \odot
    \gamma + \beta` right after the first linear layer, and stopping before
    the last linear layer of a :obj:`plain_last` MLP (PyG computes it even
    with :obj:`return_emb=True`; skipping it is what lets sum/mean pooling
    move in front of it)."""
    num_layers = len(mlp.lins)
    for i, lin in enumerate(mlp.lins):
        if i == num_layers - 1 and mlp.plain_last:
            if skip_last:
                return x
            x = lin(x)
            if i == 0 and scale is not None and shift is not None:
                x = torch.addcmul(shift, x, scale)
            return F.dropout(x, p=mlp.dropout[i], training=mlp.training)
        x = lin(x)
        if i == 0 and scale is not None and shift is not None:
            x = torch.addcmul(shift, x, scale)
        norm = mlp.norms[i]
        if mlp.act is not None and (mlp.act_first
                                    or isinstance(norm, torch.nn.Identity)):
            x = activate(mlp.act, x)
        x = norm(x, batch, batch_size) if mlp.supports_norm_batch else norm(x)
        if mlp.act is not None and not mlp.act_first \
                and not isinstance(norm, torch.nn.Identity):
            x = mlp.act(x)
        x = F.dropout(x, p=mlp.dropout[i], training=mlp.training)
    return x


def activate(act: torch.nn.Module, x: Tensor) -> Tensor:
    r"""Applies :obj:`act` to a layer's fresh output (a linear layer, the
    FiLM modulation, an equivariant layer), in place for a ReLU: none of
    those keeps its output for the backward pass, and ReLU's own backward
    needs only its result. Saves one :math:`N \times F` buffer per layer;
    autograd's version counter would catch any misuse."""
    if type(act) is torch.nn.ReLU:
        return torch.relu_(x)
    return act(x)


def can_fuse(phi: torch.nn.Module, aggr: Aggregation) -> bool:
    r"""Whether pooling may move in front of :obj:`phi`'s last layer: sum and
    mean commute with the affine last layer of a :obj:`plain_last` MLP."""
    return (isinstance(phi, MLP) and phi.plain_last and len(phi.lins) > 0
            and type(aggr) in (SumAggregation, MeanAggregation))


def phi_pool(phi: torch.nn.Module, aggr: Aggregation, fuse: bool, x: Tensor,
             index: Tensor, ptr: Optional[Tensor], dim_size: int,
             scale: Optional[Tensor] = None,
             shift: Optional[Tensor] = None) -> Tensor:
    r""":math:`\bigoplus_{i \in s} \phi(\mathbf{x}_i)` for every set
    :math:`s`, optionally FiLM-modulated after :math:`\phi`'s first layer.

    With :obj:`fuse` (see :func:`can_fuse`), pools before :math:`\phi`'s last
    layer :math:`\mathbf{h}\mathbf{W} + \mathbf{b}` and applies it to the
    pooled rows: :math:`\sum_i (\mathbf{h}_i\mathbf{W} + \mathbf{b}) =
    (\sum_i \mathbf{h}_i)\mathbf{W} + n_s\mathbf{b}`, and for the mean
    :math:`(\mathrm{mean}_i\,\mathbf{h}_i)\mathbf{W} + [n_s > 0]\,
    \mathbf{b}`. Exact in arithmetic, and an :math:`N/B`-fold saving on
    that layer.
    """
    if not isinstance(phi, MLP):
        return apply_aggr(aggr, phi(x), index, ptr, dim_size)
    last = phi.lins[-1]
    fused = (fuse and not (phi.training and phi.dropout[-1] > 0)
             and not (len(phi.lins) == 1 and scale is not None))
    if not fused:
        h = run_mlp(phi, x, index, dim_size, scale, shift)
        return apply_aggr(aggr, h, index, ptr, dim_size)
    h = run_mlp(phi, x, index, dim_size, scale, shift, skip_last=True)
    out = F.linear(apply_aggr(aggr, h, index, ptr, dim_size), last.weight)
    if last.bias is not None:
        count = set_sizes(x, index, ptr, dim_size)
        if isinstance(aggr, MeanAggregation):
            count = count.clamp(max=1)
        out = torch.addcmul(out, count.to(out.dtype).unsqueeze(-1), last.bias)
    return out
