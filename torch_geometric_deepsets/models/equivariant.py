from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric.nn.resolver import activation_resolver
from torch_geometric_deepsets.layers import PermutationEquivariantLayer
from torch_geometric_deepsets.models._utils import (
    ActType,
    ContextFusion,
    check_channels,
    check_dropout,
    check_fusion,
    stack_options,
)
from torch_geometric_deepsets.pool import (
    AggrType,
    apply_aggr,
    call_validated,
    call_with_sets,
    check_int,
    element_index,
    resolve_aggr,
)


class DeepSetsEquivariant(torch.nn.Module):
    r"""A stack of
    :class:`~torch_geometric_deepsets.PermutationEquivariantLayer` from the
    `"Deep Sets" <https://arxiv.org/abs/1703.06114>`_ paper, with an
    activation :math:`\sigma` and dropout between the layers:

    .. math::
        \mathbf{H}^{(\ell+1)} = \sigma\left(
        \mathrm{PermEqui}_\ell(\mathbf{H}^{(\ell)})\right),

    giving one output row per element (a set-to-set map, :math:`f(\pi
    \mathbf{X}) = \pi f(\mathbf{X})`) or, with :obj:`readout`, one row per set
    (a permutation-invariant map, since pooling after equivariant layers is
    invariant).

    With :obj:`context_channels`, the map is conditioned on a per-set
    context :math:`\mathbf{z}_s`, joined as in
    :class:`~torch_geometric_deepsets.DeepSetsConditional`: concatenated to
    the elements (:obj:`"concat"`), added to them after a linear map
    (:obj:`"add"`), or FiLM of the first layer's output (:obj:`"film"`; of
    the input for a one-layer stack). For every fixed :math:`\mathbf{z}`
    the map stays equivariant.

    Args:
        channels (List[int]): :obj:`[in, hidden..., out]`, at least two
            entries; one layer per consecutive pair. :obj:`in` may be
            :obj:`-1` (found at the first call).
        aggr (str or Aggregation or list, optional): The pooling inside each
            layer. (default: :obj:`"sum"`)
        tied (bool, optional): Use the tied form (eq. 23) in every layer.
            (default: :obj:`False`)
        act (str or torch.nn.Module, optional): Activation between layers.
            (default: :obj:`"relu"`)
        dropout (float, optional): Dropout probability between layers.
            (default: :obj:`0.0`)
        readout (str or Aggregation or list, optional): If given, the output
            of the last layer is pooled with it to one row per set.
            (default: :obj:`None`)
        plain_last (bool, optional): If :obj:`False`, the activation and
            dropout also follow the last layer (as in the paper's point-cloud
            model, whose last equivariant layer is followed by tanh).
            (default: :obj:`True`)
        aggr_kwargs (dict, optional): Arguments of a string :obj:`aggr`.
            (default: :obj:`None`)
        context_channels (int, optional): Width :math:`C` of a per-set
            context, given as :obj:`context=` to :meth:`forward`; :obj:`-1`
            finds it at the first call. (default: :obj:`None`)
        fusion (str, optional): How the context joins: :obj:`"concat"`,
            :obj:`"film"` or :obj:`"add"`. (default: :obj:`"concat"`)

    Shapes:
        - **input:** elements :math:`(*, N, F_{in})`, set ids :math:`(N)`
          or boundaries :math:`(B + 1)`, context :math:`(B, C)` (with
          :obj:`context_channels`; then the elements are a matrix)
        - **output:** :math:`(*, N, F_{out})`, or :math:`(*, B, F_{out}')`
          with :obj:`readout`
    """
    def __init__(
        self,
        channels: List[int],
        aggr: AggrType = 'sum',
        tied: bool = False,
        act: ActType = 'relu',
        dropout: float = 0.0,
        readout: AggrType = None,
        plain_last: bool = True,
        aggr_kwargs: Optional[Dict[str, Any]] = None,
        context_channels: Optional[int] = None,
        fusion: str = 'concat',
    ) -> None:
        super().__init__()
        channels = check_channels(channels, 'channels')
        check_dropout(dropout)
        if context_channels is not None:
            check_int('context_channels', context_channels, lazy=True)
        check_fusion(fusion)
        self.channels = channels
        self.tied = tied
        self.dropout = dropout
        self.plain_last = plain_last
        self.context_channels = context_channels
        self.fusion = fusion

        widths = list(channels)
        self.context_fusion: Optional[ContextFusion] = None
        if context_channels is not None:
            # FiLM modulates the first layer's output; concat and add (and
            # FiLM of a one-layer stack) the input.
            at = 1 if fusion == 'film' and len(channels) > 2 else 0
            if fusion != 'concat' and widths[at] < 0:
                raise ValueError(f"fusion={fusion!r} maps the context to the "
                                 f"input width, which is lazy (-1) here; give "
                                 f"it, or use fusion='concat'")
            self.context_fusion = ContextFusion(fusion, context_channels,
                                                widths[at])
            if fusion == 'concat' and widths[0] > 0:
                # A lazy context width makes the first layer lazy.
                widths[0] = -1 if context_channels < 0 else \
                    widths[0] + context_channels
        self.layers = torch.nn.ModuleList([
            PermutationEquivariantLayer(c_in, c_out, aggr=aggr, tied=tied,
                                        aggr_kwargs=aggr_kwargs)
            for c_in, c_out in zip(widths[:-1], widths[1:])
        ])
        self.act = activation_resolver(act) if act is not None else None
        self.readout = resolve_aggr(readout) if readout is not None else None

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        for layer in self.layers:
            layer.reset_parameters()
        if self.context_fusion is not None:
            self.context_fusion.reset_parameters()
        if self.readout is not None:
            self.readout.reset_parameters()

    def __call__(self, x: Tensor, batch: Optional[Tensor] = None,
                 ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                 dim: int = -2, context: Optional[Tensor] = None) -> Tensor:
        if context is None and self.context_fusion is not None:
            width = self.context_fusion.expected_channels(
                self.layers[0].lin, self.channels[0])
            raise ValueError(f"This model takes a per-set 'context' "
                             f"[num_sets, {width or 'context_channels'}]; "
                             f"pass context=...")
        if context is not None and self.context_channels is None:
            raise ValueError("'context' was given but the model has no "
                             "'context_channels'; build it with "
                             "context_channels=C")
        return call_with_sets(self, x, (), batch, ptr, dim_size, dim,
                              'batch', self.channels[0], self.layers[0],
                              matrix=context is not None, context=context)

    def forward(
        self,
        x: Tensor,
        batch: Optional[Tensor] = None,
        ptr: Optional[Tensor] = None,
        dim_size: Optional[int] = None,
        dim: int = -2,
        context: Optional[Tensor] = None,
    ) -> Tensor:
        r"""Forward pass; arguments as in
        :meth:`PermutationEquivariantLayer.forward`, and the per-set
        :obj:`context` :math:`(B, C)` of a conditioned model."""
        # Every layer gathers set rows back to the elements: find the set of
        # every row once.
        index = element_index(x, batch, ptr, dim)
        fusion = self.context_fusion
        if fusion is not None:
            fusion.check(context, dim_size, x.dtype, self.layers[0].lin,
                         self.channels[0])
            if fusion.fusion != 'film' or len(self.layers) == 1:
                x = fusion(x, context, index)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = call_validated(layer, x, index, dim_size=dim_size, dim=dim)
            if i < last or not self.plain_last:
                if self.act is not None:
                    x = self.act(x)
                x = F.dropout(x, p=self.dropout, training=self.training)
            if i == 0 and fusion is not None and fusion.fusion == 'film' \
                    and last > 0:
                x = fusion(x, context, index)
        if self.readout is not None:
            x = apply_aggr(self.readout, x, index, ptr, dim_size, dim)
        return x

    def __repr__(self) -> str:
        extra = stack_options(self.act, self.dropout, self.readout)
        if not self.plain_last:
            extra += ', plain_last=False'
        if self.context_channels is not None:
            extra += (f", context_channels={self.context_channels}, "
                      f"fusion='{self.fusion}'")
        return (f'{self.__class__.__name__}({self.channels}, '
                f'aggr={self.layers[0].aggr_module}, tied={self.tied}'
                f'{extra})')
