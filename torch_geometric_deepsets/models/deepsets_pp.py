from typing import Any, Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric.nn.norm import LayerNorm
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric_deepsets._kernels.weighted import (
    nonzero,
    weight_totals,
    weighted_sum,
)
from torch_geometric_deepsets.checks import check_dropout, check_int
from torch_geometric_deepsets.layers import PermutationEquivariantLayer
from torch_geometric_deepsets.models.equivariant import stack_options
from torch_geometric_deepsets.pool import AggrType, apply_aggr, resolve_aggr
from torch_geometric_deepsets.sets import SetModule, call_validated

NORMS = ('set_norm', 'layer_norm')


def _norm(norm: Optional[str], channels: int) -> Optional[LayerNorm]:
    r"""Set norm is PyG's :class:`~torch_geometric.nn.norm.LayerNorm` in
    :obj:`"graph"` mode: with a batch vector it standardises each set over
    all its elements and features together and applies a per-feature affine
    map, exactly the set norm of DeepSets++
    (``test_pyg_layer_norm_in_graph_mode_is_set_norm``). It must
    always get the batch vector: without one it divides by
    :math:`\sigma + \epsilon` instead of :math:`\sqrt{\sigma^2 + \epsilon}`,
    whose gradient is not finite for a constant set."""
    if norm is None:
        return None
    if norm not in NORMS:
        raise ValueError(f"'norm' must be one of {NORMS} or None "
                         f"(got {norm!r})")
    return LayerNorm(channels, mode='graph' if norm == 'set_norm' else 'node')


class EquivariantResidualBlock(SetModule):
    r"""The "clean path" equivariant residual block from the `"Set Norm and
    Equivariant Skip Connections: Putting the Deep in Deep Sets"
    <https://arxiv.org/abs/2206.11925>`_ paper (Zhang et al., ICML 2022):

    .. math::
        \mathbf{X}' = \mathbf{X} + \mathrm{PermEqui}_2\Big(\sigma\big(
        \mathrm{SN}_2\big(\mathrm{PermEqui}_1(\sigma(\mathrm{SN}_1(
        \mathbf{X})))\big)\big)\Big),

    with :math:`\mathrm{PermEqui}` the
    :class:`~torch_geometric_deepsets.PermutationEquivariantLayer` and
    :math:`\mathrm{SN}` set normalisation, which standardises each set
    :math:`s` over all its elements *and* features and then scales and
    shifts every feature:

    .. math::
        \mathrm{SN}(\mathbf{x}_i) = \frac{\mathbf{x}_i - \mu_s}
        {\sqrt{\sigma_s^2 + \epsilon}} \odot \boldsymbol{\gamma} +
        \boldsymbol{\beta}, \qquad
        \mu_s = \frac{1}{n_s C} \sum_{j \in s} \sum_c x_{j,c}, \quad
        \sigma_s^2 = \frac{1}{n_s C} \sum_{j \in s} \sum_c
        (x_{j,c} - \mu_s)^2.

    Nothing but the identity lies on the skip path (the "clean path"), so a
    stack of blocks passes gradients through unchanged however deep it is.
    Set norm is PyG's :class:`~torch_geometric.nn.norm.LayerNorm` with
    :obj:`mode="graph"`, given the set ids.

    Args:
        channels (int): Width of the elements, kept by the block, or
            :obj:`-1` to find it at the first call (the layers are then
            built at the first call, as PyG's lazy layers are).
        aggr (str or Aggregation or list, optional): The pooling of both
            equivariant layers. (default: :obj:`"sum"`)
        tied (bool, optional): Use the tied layer form (eq. 23 of Deep Sets).
            (default: :obj:`False`)
        norm (str, optional): :obj:`"set_norm"`, :obj:`"layer_norm"`
            (per element, over its features) or :obj:`None`.
            (default: :obj:`"set_norm"`)
        act (str or torch.nn.Module, optional): The activation
            :math:`\sigma`. (default: :obj:`"relu"`)
        dropout (float, optional): Dropout before the second layer.
            (default: :obj:`0.0`)
        aggr_kwargs (dict, optional): Arguments of a string :obj:`aggr`.
            (default: :obj:`None`)

    Shapes:
        - **input:** elements :math:`(*, N, C)`, set ids :math:`(N)` or
          boundaries :math:`(B + 1)`
        - **output:** :math:`(*, N, C)`
    """
    #: Set norm (PyG's LayerNorm in graph mode) normalises matrices only.
    folds_leading_dims = True

    def __init__(
        self,
        channels: int,
        aggr: AggrType = 'sum',
        tied: bool = False,
        norm: Optional[str] = 'set_norm',
        act: Union[str, torch.nn.Module, None] = 'relu',
        dropout: float = 0.0,
        aggr_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        check_dropout(dropout)
        self.channels = check_int('channels', channels, lazy=True)
        self.tied = tied
        self.norm = norm
        self.dropout = dropout
        # A plain dict: an Aggregation instance here must not become a
        # submodule of its own (the layers hold it).
        self._layer_options = dict(aggr=aggr, tied=tied,
                                   aggr_kwargs=aggr_kwargs)
        _norm(norm, 1)  # validates 'norm' now, not at the first call
        self.lin1: Optional[PermutationEquivariantLayer] = None
        self.lin2: Optional[PermutationEquivariantLayer] = None
        self.norm1: Optional[LayerNorm] = None
        self.norm2: Optional[LayerNorm] = None
        self.act = activation_resolver(act) if act is not None else None
        if self.channels > 0:
            self._build(self.channels)

    def _build(self, channels: int) -> None:
        self.channels = channels
        layer = self._layer_options
        self.lin1 = PermutationEquivariantLayer(channels, channels, **layer)
        self.lin2 = PermutationEquivariantLayer(channels, channels, **layer)
        self.norm1 = _norm(self.norm, channels)
        self.norm2 = _norm(self.norm, channels)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A lazy block takes its width from the weights it loads.
        weight = state_dict.get(prefix + 'lin1.lin.weight')
        if self.lin1 is None and weight is not None:
            self._build(weight.size(-1))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        for module in (self.lin1, self.lin2, self.norm1, self.norm2):
            if module is not None:
                module.reset_parameters()

    def input_layer(self) -> Optional[torch.nn.Module]:
        return self.lin1

    def _aggr_repr(self) -> str:
        if self.lin1 is not None:
            return str(self.lin1.aggr_module)
        return str(resolve_aggr(self._layer_options['aggr'],
                                self._layer_options['aggr_kwargs']))

    takes_weight = True

    def forward(self, x: Tensor, batch: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2, weight: Optional[Tensor] = None) -> Tensor:
        r"""The block on every element."""
        if self.lin1 is None:  # lazy: the first call gives the width
            self._build(x.size(-1))
            self.to(x.device, x.dtype if x.is_floating_point() else None)
        h = _pre_activate(self.norm1, self.act, x, batch, dim_size, weight)
        h = call_validated(self.lin1, h, batch, dim_size, weight=weight)
        h = _pre_activate(self.norm2, self.act, h, batch, dim_size, weight)
        h = F.dropout(h, p=self.dropout, training=self.training)
        return x + call_validated(self.lin2, h, batch, dim_size,
                                  weight=weight)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.channels}, '
                f'aggr={self._aggr_repr()}, tied={self.tied}, '
                f'norm={self.norm}{stack_options(self.act, self.dropout)})')


def _normalise(norm: LayerNorm, x: Tensor, index: Tensor, dim_size: int,
               weight: Optional[Tensor]) -> Tensor:
    r""":obj:`norm` of the rows :obj:`x`; set norm of weighted rows takes
    its statistics over the set as if an element of weight :math:`k` were
    :math:`k` copies of it (:math:`\mu_s`, :math:`\sigma_s^2` as above,
    each sum over :math:`j` weighted by :math:`w_j` and :math:`n_s` the
    total weight)."""
    if weight is None or norm.mode != 'graph':
        return norm(x, index, dim_size)
    w = weight.to(x.dtype).unsqueeze(-1)
    total = nonzero(weight_totals(w, x, index, None, dim_size, 0))
    total = total * x.size(-1)
    mean = weighted_sum(x, index, None, dim_size, 0, w).sum(
        dim=-1, keepdim=True) / total
    centred = x - mean.index_select(0, index)
    var = weighted_sum(centred * centred, index, None, dim_size, 0, w).sum(
        dim=-1, keepdim=True) / total
    out = centred / (var + norm.eps).sqrt().index_select(0, index)
    if norm.weight is not None and norm.bias is not None:
        out = out * norm.weight + norm.bias
    return out


def _pre_activate(norm: Optional[LayerNorm], act: Optional[torch.nn.Module],
                  x: Tensor, index: Tensor, dim_size: int,
                  weight: Optional[Tensor] = None) -> Tensor:
    if norm is not None:
        x = _normalise(norm, x, index, dim_size, weight)
    # Never in place: without a norm, x is the block's skip connection.
    return x if act is None else act(x)


class DeepSetsPlusPlus(SetModule):
    r"""DeepSets++ from the `"Set Norm and Equivariant Skip Connections:
    Putting the Deep in Deep Sets" <https://arxiv.org/abs/2206.11925>`_ paper
    (Zhang et al., ICML 2022): an equivariant layer to the hidden width, a
    stack of "clean path" residual blocks with set norm
    (:class:`EquivariantResidualBlock`), and the closing normalisation,
    activation and equivariant layer of a pre-activation residual network:

    .. math::
        \mathbf{H}^{(0)} &= \mathrm{PermEqui}_{\mathrm{in}}(\mathbf{X}) \\
        \mathbf{H}^{(\ell+1)} &= \mathbf{H}^{(\ell)} +
        f_\ell(\mathbf{H}^{(\ell)}), \qquad \ell = 0, \dots, L - 1 \\
        \mathbf{Y} &= \mathrm{PermEqui}_{\mathrm{out}}(\sigma(
        \mathrm{SN}(\mathbf{H}^{(L)}))),

    :math:`2L + 2` equivariant layers in all. The output has one row per
    element (a set-to-set map) or, with :obj:`readout`, one row per set.
    Where the plain stack
    (:class:`~torch_geometric_deepsets.DeepSetsEquivariant`) stops training
    as it gets deeper, the identity path keeps gradients at every depth.

    Args:
        in_channels (int): Size of each input element, or :obj:`-1` to
            find it at the first call.
        hidden_channels (int): Width of the residual stream.
        out_channels (int): Size of each output row.
        num_blocks (int): Number of residual blocks :math:`L` (may be 0).
        aggr (str or Aggregation or list, optional): The pooling of every
            equivariant layer. (default: :obj:`"sum"`)
        tied (bool, optional): Use the tied layer form (eq. 23 of Deep Sets).
            (default: :obj:`False`)
        norm (str, optional): :obj:`"set_norm"`, :obj:`"layer_norm"` or
            :obj:`None`. (default: :obj:`"set_norm"`)
        act (str or torch.nn.Module, optional): The activation.
            (default: :obj:`"relu"`)
        dropout (float, optional): Dropout inside every block.
            (default: :obj:`0.0`)
        readout (str or Aggregation or list, optional): If given, the output
            rows are pooled with it to one row per set. (default: :obj:`None`)
        aggr_kwargs (dict, optional): Arguments of a string :obj:`aggr`.
            (default: :obj:`None`)

    Shapes:
        - **input:** elements :math:`(*, N, F_{in})`, set ids :math:`(N)`
          or boundaries :math:`(B + 1)`
        - **output:** :math:`(*, N, F_{out})`, or :math:`(*, B, F_{out}')`
          with :obj:`readout`
    """
    #: Set norm (PyG's LayerNorm in graph mode) normalises matrices only.
    folds_leading_dims = True

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        num_blocks: int,
        aggr: AggrType = 'sum',
        tied: bool = False,
        norm: Optional[str] = 'set_norm',
        act: Union[str, torch.nn.Module, None] = 'relu',
        dropout: float = 0.0,
        readout: AggrType = None,
        aggr_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels, lazy=True)
        self.hidden_channels = check_int('hidden_channels', hidden_channels)
        self.out_channels = check_int('out_channels', out_channels)
        self.num_blocks = check_int('num_blocks', num_blocks, minimum=0)
        check_dropout(dropout)
        self.tied = tied
        self.norm = norm
        self.dropout = dropout
        layer = dict(aggr=aggr, tied=tied, aggr_kwargs=aggr_kwargs)
        self.lin_in = PermutationEquivariantLayer(in_channels,
                                                  hidden_channels, **layer)
        self.blocks = torch.nn.ModuleList([
            EquivariantResidualBlock(hidden_channels, norm=norm, act=act,
                                     dropout=dropout, **layer)
            for _ in range(num_blocks)
        ])
        self.norm_out = _norm(norm, hidden_channels)
        self.act = activation_resolver(act) if act is not None else None
        self.lin_out = PermutationEquivariantLayer(hidden_channels,
                                                   out_channels, **layer)
        self.readout = resolve_aggr(readout) if readout is not None else None

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        self.lin_in.reset_parameters()
        for block in self.blocks:
            block.reset_parameters()
        if self.norm_out is not None:
            self.norm_out.reset_parameters()
        self.lin_out.reset_parameters()
        if self.readout is not None:
            self.readout.reset_parameters()

    def input_layer(self) -> torch.nn.Module:
        return self.lin_in

    takes_weight = True

    def forward(self, x: Tensor, batch: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2, weight: Optional[Tensor] = None) -> Tensor:
        r"""DeepSets++ on every element (pooled with :obj:`readout`, where
        given)."""
        h = call_validated(self.lin_in, x, batch, dim_size, weight=weight)
        for block in self.blocks:
            h = call_validated(block, h, batch, dim_size, weight=weight)
        h = _pre_activate(self.norm_out, self.act, h, batch, dim_size,
                          weight)
        h = call_validated(self.lin_out, h, batch, dim_size, weight=weight)
        if self.readout is not None:
            h = apply_aggr(self.readout, h, batch, ptr, dim_size, 0,
                           weight=weight)
        return h

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.hidden_channels}, {self.out_channels}, '
                f'num_blocks={self.num_blocks}, '
                f'aggr={self.lin_in.aggr_module}, tied={self.tied}, '
                f'norm={self.norm}'
                f'{stack_options(self.act, self.dropout, self.readout)})')
