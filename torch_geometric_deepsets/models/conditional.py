from typing import Any, Dict, Optional

import torch
from torch import Tensor

from torch_geometric.nn import MLP
from torch_geometric.nn.inits import reset
from torch_geometric_deepsets.checks import check_dropout, check_int
from torch_geometric_deepsets.models.context import (
    ContextFusion,
    check_fusion,
    joins_after_first_layer,
)
from torch_geometric_deepsets.models.mlp import (
    ActType,
    ModuleSpec,
    build_phi,
    build_rho,
    check_channels,
    run,
)
from torch_geometric_deepsets.models.phi_pool import phi_pool
from torch_geometric_deepsets.models.widths import (
    check_rho_input,
    first_linear,
    in_channels_of,
    out_channels_of,
)
from torch_geometric_deepsets.pool import AggrType, pooled_width, resolve_aggr
from torch_geometric_deepsets.sets import ConditionedSetModule


class DeepSetsConditional(ConditionedSetModule):
    r"""A Deep Sets model conditioned on a per-set context :math:`\mathbf{z}_s`
    (the :math:`\phi(\mathbf{x}_m \mid \mathbf{z})` of the `"Deep Sets"
    <https://arxiv.org/abs/1703.06114>`_ paper):

    .. math::
        f(\mathcal{X}_s \mid \mathbf{z}_s) = \rho\left( \left[
        \bigoplus_{\mathbf{x}_i \in \mathcal{X}_s}
        \phi(\mathbf{x}_i \mid \mathbf{z}_s) \,\Big\Vert\, \mathbf{z}_s
        \right] \right),

    where the context also reaches :math:`\rho` when
    :obj:`context_in_rho=True` (as in the paper's experiments). The
    conditioning of :math:`\phi` is chosen by :obj:`fusion`:

    * :obj:`"concat"`: :math:`\phi([\mathbf{x}_i \,\Vert\, \mathbf{z}_s])`;
    * :obj:`"film"`: FiLM of the output of :math:`\phi`'s first layer
      :math:`\phi_1` (its linear map, activation, normalisation and
      dropout), i.e. :math:`\phi_1(\mathbf{x}_i) \odot (1 +
      \boldsymbol{\gamma}(\mathbf{z}_s)) + \boldsymbol{\beta}(\mathbf{z}_s)`,
      then the rest of :math:`\phi` (identity at :math:`\gamma=\beta=0`).
      A one-layer :math:`\phi` is modulated at its input;
    * :obj:`"add"`: :math:`\phi(\mathbf{x}_i + \mathbf{z}_s \mathbf{W})`.

    Context projections are computed once per set and then gathered to the
    elements. For every fixed :math:`\mathbf{z}_s` the model is invariant to
    the order of the elements. Like every conditioned model of the package
    it takes the context as its second argument: :obj:`model(x, context,
    batch)`.

    Args:
        phi (List[int] or torch.nn.Module): The element network. A channel
            list :obj:`[in, hidden..., out]` names the element width
            :obj:`in`; with :obj:`"concat"` its first layer is widened by
            :obj:`context_channels` automatically. A module must accept the
            input its fusion produces; :obj:`"film"` needs a channel list.
        rho (List[int] or torch.nn.Module): The set network. A channel list
            starts with :math:`\phi`'s pooled width and is widened by
            :obj:`context_channels` when :obj:`context_in_rho=True`.
        context_channels (int): Width :math:`C` of the context, or
            :obj:`-1` to find it at the first call (as for PyG's lazy
            layers; the layers that take the context then start lazy too).
        fusion (str, optional): :obj:`"concat"`, :obj:`"film"` or
            :obj:`"add"`. (default: :obj:`"concat"`)
        context_in_rho (bool, optional): Concatenate the context to the
            pooled features before :math:`\rho`. (default: :obj:`True`)
        aggr (str or Aggregation or list, optional): The pooling.
            (default: :obj:`"sum"`)
        act (str or torch.nn.Module, optional): Activation of channel-list
            MLPs. (default: :obj:`"relu"`)
        norm (str, optional): Normalisation of channel-list MLPs.
            (default: :obj:`None`)
        dropout (float, optional): Dropout of channel-list MLPs.
            (default: :obj:`0.0`)
        aggr_kwargs (dict, optional): Arguments of a string :obj:`aggr`.
            (default: :obj:`None`)

    Shapes:
        - **input:** elements :math:`(*, N, F_{in})`, context
          :math:`(B, C)` or :math:`(*, B, C)`, set ids :math:`(N)` or
          boundaries :math:`(B + 1)`
        - **output:** :math:`(*, B, F_{out})`
    """
    #: The context is gathered to the rows of a matrix.
    folds_leading_dims = True

    def __init__(
        self,
        phi: ModuleSpec,
        rho: ModuleSpec,
        context_channels: int,
        fusion: str = 'concat',
        context_in_rho: bool = True,
        aggr: AggrType = 'sum',
        act: ActType = 'relu',
        norm: Optional[str] = None,
        dropout: float = 0.0,
        aggr_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        check_fusion(fusion)
        check_int('context_channels', context_channels, lazy=True)
        check_dropout(dropout)
        self.context_channels = context_channels
        self.fusion = fusion
        self.context_in_rho = context_in_rho
        self.aggr_module = resolve_aggr(aggr, aggr_kwargs)

        # phi_first: the layer of phi before a FiLM modulation (None: the
        # modulation acts on the elements themselves).
        self.phi_first: Optional[MLP] = None
        if fusion == 'film':
            if not isinstance(phi, (list, tuple)):
                raise ValueError("fusion='film' modulates phi after its first "
                                 "layer, so 'phi' must be a channel list "
                                 "[in, hidden..., out]")
            channels = check_channels(phi, 'phi')
            if joins_after_first_layer(fusion, channels):
                self.phi_first = MLP(channels[:2], act=act, norm=norm,
                                     dropout=dropout, plain_last=False)
                phi = channels[1:]
        self.phi = build_phi(phi, 'phi', act, norm, dropout,
                             context_channels if fusion == 'concat' else 0)
        if self.phi_first is not None:
            self.in_channels: Optional[int] = self.phi_first.in_channels
        elif fusion == 'concat' and context_channels < 0:
            # phi's input is lazy; the element width is the list's own.
            given = phi[0] if isinstance(phi, (list, tuple)) else -1
            self.in_channels = given if given > 0 else None
        else:
            phi_in = in_channels_of(self.phi)
            extra = context_channels if fusion == 'concat' else 0
            self.in_channels = None if phi_in is None or phi_in < 0 \
                else phi_in - extra

        fused_width = None
        if fusion != 'concat':
            fused_width = (self.phi_first.out_channels if self.phi_first
                           is not None else self.in_channels)
            if fused_width is None:
                raise ValueError(f"fusion={fusion!r} projects the context to "
                                 f"the width of phi's input, which is unknown "
                                 f"for this 'phi'; pass a channel list, a "
                                 f"Linear or an MLP")
        self.context_fusion = ContextFusion(fusion, context_channels,
                                           fused_width)

        rho_extra = context_channels if context_in_rho else 0
        self.rho = build_rho(rho, 'rho', act, norm, dropout, rho_extra)
        # A lazy context width is checked at the first call instead.
        check_rho_input(self.rho, None if rho_extra < 0 else pooled_width(
            self.aggr_module, out_channels_of(self.phi)), self.aggr_module,
            rho_extra)

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        reset(self.phi_first)
        reset(self.phi)
        reset(self.rho)
        self.context_fusion.reset_parameters()
        self.aggr_module.reset_parameters()

    def input_layer(self) -> torch.nn.Module:
        return self.phi_first or self.phi

    def context_width(self) -> Optional[int]:
        return self.context_fusion.expected_channels(first_linear(self.phi),
                                                     self.in_channels)

    takes_weight = True

    def forward(self, x: Tensor, context: Tensor,
                batch: Optional[Tensor] = None, ptr: Optional[Tensor] = None,
                dim_size: Optional[int] = None, dim: int = -2,
                weight: Optional[Tensor] = None) -> Tensor:
        r""":math:`f(\mathcal{X}_s \mid \mathbf{z}_s)` for every set."""
        if self.phi_first is not None:
            x = run(self.phi_first, x, batch, ptr, dim_size, dim)
        x = self.context_fusion(x, context, batch)
        out = phi_pool(self.phi, self.aggr_module, x, batch, ptr, dim_size,
                       dim, weight=weight)
        extra = context.size(-1) if self.context_in_rho else 0
        check_rho_input(self.rho, out.size(-1), self.aggr_module, extra)
        if self.context_in_rho:
            out = torch.cat([out, context], dim=-1)
        return self.rho(out)

    def __repr__(self) -> str:
        first = '' if self.phi_first is None else \
            f'phi_first={self.phi_first}, '
        return (f'{self.__class__.__name__}({first}phi={self.phi}, '
                f'rho={self.rho}, context_channels={self.context_channels}, '
                f"fusion='{self.fusion}', context_in_rho={self.context_in_rho}"
                f', aggr={self.aggr_module})')
