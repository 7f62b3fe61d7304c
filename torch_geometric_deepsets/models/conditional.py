from typing import Any, Dict, Final, Optional, Union

import torch
from torch import Tensor
from torch.nn import Linear

from torch_geometric.nn import MLP
from torch_geometric.nn.inits import reset
from torch_geometric_deepsets.models._utils import (
    ModuleSpec,
    build_mlp,
    can_fuse,
    in_channels_of,
    out_channels_of,
    phi_pool,
)
from torch_geometric_deepsets.pool import (
    AggrType,
    broadcast,
    check_sets,
    check_x,
    element_index,
    pooled_channels,
    resolve_aggr,
)

FUSIONS = ('concat', 'film', 'add')


class DeepSetsConditional(torch.nn.Module):
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
    * :obj:`"film"`: FiLM after :math:`\phi`'s first linear layer
      :math:`\ell_1`, i.e. :math:`\ell_1(\mathbf{x}_i) \odot (1 +
      \boldsymbol{\gamma}(\mathbf{z}_s)) + \boldsymbol{\beta}(\mathbf{z}_s)`
      then the rest of :math:`\phi` (identity at :math:`\gamma=\beta=0`);
    * :obj:`"add"`: :math:`\phi(\mathbf{x}_i + \mathbf{z}_s \mathbf{W})`.

    Context projections are computed once per set and then gathered to the
    elements. For every fixed :math:`\mathbf{z}_s` the model is invariant to
    the order of the elements.

    Args:
        phi (List[int] or torch.nn.Module): The element network. A channel
            list :obj:`[in, hidden..., out]` names the element width
            :obj:`in`; with :obj:`"concat"` its first layer is widened by
            :obj:`context_channels` automatically. A module must accept the
            input its fusion produces; :obj:`"film"` needs a channel list or
            a :class:`~torch_geometric.nn.models.MLP`.
        rho (List[int] or torch.nn.Module): The set network. A channel list
            starts with :math:`\phi`'s pooled width and is widened by
            :obj:`context_channels` when :obj:`context_in_rho=True`.
        context_channels (int): Width :math:`C` of the context.
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
        - **input:** elements :math:`(N, F_{in})`, context :math:`(B, C)`,
          set ids :math:`(N)` or boundaries :math:`(B + 1)`
        - **output:** :math:`(B, F_{out})`
    """
    # A TorchScript constant, so only the matching phi call is compiled.
    _phi_is_mlp: Final[bool]

    def __init__(
        self,
        phi: ModuleSpec,
        rho: ModuleSpec,
        context_channels: int,
        fusion: str = 'concat',
        context_in_rho: bool = True,
        aggr: AggrType = 'sum',
        act: Union[str, torch.nn.Module, None] = 'relu',
        norm: Optional[str] = None,
        dropout: float = 0.0,
        aggr_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"Unknown 'fusion' {fusion!r}; valid options are "
                             f"{', '.join(repr(f) for f in FUSIONS)}")
        if isinstance(context_channels, bool) or not isinstance(
                context_channels, int) or context_channels <= 0:
            raise ValueError(f"'context_channels' must be a positive int "
                             f"(got {context_channels!r})")
        self.context_channels = context_channels
        self.fusion = fusion
        self.context_in_rho = context_in_rho
        self.aggr_module = resolve_aggr(aggr, aggr_kwargs)

        extra = context_channels if fusion == 'concat' else 0
        self.phi = build_mlp(phi, 'phi', act, norm, dropout, extra)
        phi_in = in_channels_of(self.phi)
        # Width of the elements themselves (phi's input minus the context).
        self.in_channels = None if phi_in is None or phi_in < 0 \
            else phi_in - extra

        phi_out = out_channels_of(self.phi)
        pooled = None if phi_out is None else pooled_channels(
            self.aggr_module, phi_out)
        rho_extra = context_channels if context_in_rho else 0
        self.rho = build_mlp(rho, 'rho', act, norm, dropout, rho_extra)
        rho_in = in_channels_of(self.rho)
        if pooled is not None and rho_in is not None and rho_in > 0 \
                and rho_in != pooled + rho_extra:
            raise ValueError(f"'rho' takes {rho_in} input channels but gets "
                             f"{pooled} pooled + {rho_extra} context channels")

        self.film = None
        self.context_lin = None
        if fusion == 'film':
            if not isinstance(self.phi, MLP):
                raise ValueError("fusion='film' modulates phi after its first "
                                 "layer, so 'phi' must be a channel list or a "
                                 "torch_geometric.nn.MLP")
            hidden = self.phi.channel_list[1]
            self.film = Linear(context_channels, 2 * hidden)
        elif fusion == 'add':
            if self.in_channels is None:
                raise ValueError("fusion='add' projects the context to the "
                                 "element width, which is unknown for this "
                                 "'phi'; pass a channel list, a Linear or an "
                                 "MLP")
            self.context_lin = Linear(context_channels, self.in_channels)

        self._fuse = can_fuse(self.phi, self.aggr_module)
        self._phi_is_mlp = isinstance(self.phi, MLP)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        reset(self.phi)
        reset(self.rho)
        self.aggr_module.reset_parameters()
        if self.film is not None:
            self.film.reset_parameters()
        if self.context_lin is not None:
            self.context_lin.reset_parameters()

    def forward(
        self,
        x: Tensor,
        context: Tensor,
        batch: Optional[Tensor] = None,
        ptr: Optional[Tensor] = None,
        dim_size: Optional[int] = None,
    ) -> Tensor:
        r"""Forward pass.

        Args:
            x (torch.Tensor): Element features :math:`(N, F_{in})`.
            context (torch.Tensor): One context row per set :math:`(B, C)`.
            batch (torch.Tensor, optional): Set id of every element.
                (default: :obj:`None`)
            ptr (torch.Tensor, optional): Boundaries of sorted sets, an
                alternative to :obj:`batch`. (default: :obj:`None`)
            dim_size (int, optional): Number of sets; defaults to the rows
                of :obj:`context`. (default: :obj:`None`)
        """
        if not torch.jit.is_scripting():
            check_x(x, channels=self.in_channels)
            check_x(context, 'context', channels=self.context_channels)
            if dim_size is None and ptr is None:
                dim_size = context.size(0)
            batch, ptr, dim_size = check_sets(x, batch, ptr, dim_size)
            if context.size(0) != dim_size:
                raise ValueError(f"'context' has {context.size(0)} rows but "
                                 f"the batch holds {dim_size} sets; give one "
                                 f"context row per set")
        index = element_index(x, batch, ptr)
        if dim_size is None:
            dim_size = context.size(0)

        scale: Optional[Tensor] = None
        shift: Optional[Tensor] = None
        if self.film is not None:
            gamma, beta = self.film(context).chunk(2, dim=-1)
            scale = broadcast(1.0 + gamma, x, index, None)
            shift = broadcast(beta, x, index, None)
        elif self.context_lin is not None:
            x = x + broadcast(self.context_lin(context), x, index, None)
        else:
            x = torch.cat([x, broadcast(context, x, index, None)], dim=-1)

        if torch.jit.is_scripting():
            # TorchScript cannot pass modules to free functions: no fusion,
            # and no FiLM, which needs to step inside phi.
            if scale is not None:
                raise RuntimeError("fusion='film' is not supported under "
                                   "TorchScript; use 'concat' or 'add'")
            if self._phi_is_mlp:
                h = self.phi(x, index, dim_size)
            else:
                h = self.phi(x)
            out = self.aggr_module(h, index, ptr=ptr, dim_size=dim_size)
        else:
            out = phi_pool(self.phi, self.aggr_module, self._fuse, x, index,
                           ptr, dim_size, scale, shift)
        if self.context_in_rho:
            out = torch.cat([out, context], dim=-1)
        return self.rho(out)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(phi={self.phi}, rho={self.rho}, '
                f'context_channels={self.context_channels}, '
                f"fusion='{self.fusion}', context_in_rho={self.context_in_rho}"
                f', aggr={self.aggr_module})')
