from typing import Any, Dict, Final, Optional, Union

import torch
from torch import Tensor

from torch_geometric.nn import MLP
from torch_geometric.nn.aggr import Aggregation
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
    check_sets,
    check_x,
    pooled_channels,
    resolve_aggr,
    set_index,
)


class DeepSetsInvariant(Aggregation):
    r"""The permutation-invariant Deep Sets model from the `"Deep Sets"
    <https://arxiv.org/abs/1703.06114>`_ paper (Theorem 2):

    .. math::
        f(\mathcal{X}_s) = \rho \left( \bigoplus_{\mathbf{x}_i \in
        \mathcal{X}_s} \phi(\mathbf{x}_i) \right),

    with :math:`\bigoplus` the sum in the theorem, or any other commutative
    pooling (mean, max, any PyG aggregation). Being a
    :class:`~torch_geometric.nn.aggr.Aggregation`, it works as a graph readout
    (:obj:`model(x, batch)`) and as :obj:`aggr=` of any
    :class:`~torch_geometric.nn.conv.MessagePassing` layer.

    For sum and mean pooling after a :math:`\phi` that ends in an affine
    layer :math:`\mathbf{h} \mapsto \mathbf{h}\mathbf{W} + \mathbf{b}` (a
    :class:`~torch_geometric.nn.models.MLP` with :obj:`plain_last=True`, as
    built from a channel list), the model pools *before* that layer and
    applies it to the :math:`B` pooled rows instead of the :math:`N`
    elements, using :math:`\sum_i (\mathbf{h}_i\mathbf{W} + \mathbf{b}) =
    (\sum_i \mathbf{h}_i)\mathbf{W} + n_s\mathbf{b}` and
    :math:`\mathrm{mean}_i(\mathbf{h}_i\mathbf{W} + \mathbf{b}) =
    (\mathrm{mean}_i\,\mathbf{h}_i)\mathbf{W} + \mathbf{b}` (for non-empty
    sets). The result is the same up to floating-point rounding; parameters
    are untouched.

    Args:
        phi (List[int] or torch.nn.Module): The element network :math:`\phi`,
            as a channel list :obj:`[in, hidden..., out]` (built as a
            :class:`~torch_geometric.nn.models.MLP`) or any module.
        rho (List[int] or torch.nn.Module): The set network :math:`\rho`,
            likewise; its input width is the pooled width of :math:`\phi`.
        aggr (str or Aggregation or list, optional): The pooling
            :math:`\bigoplus`. (default: :obj:`"sum"`)
        act (str or torch.nn.Module, optional): Activation of channel-list
            MLPs. (default: :obj:`"relu"`)
        norm (str, optional): Normalisation of channel-list MLPs, e.g.
            :obj:`"graph_norm"`. (default: :obj:`None`)
        dropout (float, optional): Dropout of channel-list MLPs.
            (default: :obj:`0.0`)
        aggr_kwargs (dict, optional): Arguments of a string :obj:`aggr`.
            (default: :obj:`None`)

    Shapes:
        - **input:** elements :math:`(N, F_{in})`, set ids :math:`(N)` or
          boundaries :math:`(B + 1)`
        - **output:** :math:`(B, F_{out})`
    """
    # A TorchScript constant, so only the matching phi call is compiled.
    _phi_is_mlp: Final[bool]

    def __init__(
        self,
        phi: ModuleSpec,
        rho: ModuleSpec,
        aggr: AggrType = 'sum',
        act: Union[str, torch.nn.Module, None] = 'relu',
        norm: Optional[str] = None,
        dropout: float = 0.0,
        aggr_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.phi = build_mlp(phi, 'phi', act, norm, dropout)
        self.rho = build_mlp(rho, 'rho', act, norm, dropout)
        self.aggr_module = resolve_aggr(aggr, aggr_kwargs)
        self.in_channels = in_channels_of(self.phi)

        phi_out, rho_in = out_channels_of(self.phi), in_channels_of(self.rho)
        if phi_out is not None and rho_in is not None and rho_in > 0:
            width = pooled_channels(self.aggr_module, phi_out)
            if width != rho_in:
                raise ValueError(f"'rho' takes {rho_in} input channels but "
                                 f"'phi' pooled with {self.aggr_module} gives "
                                 f"{width}")

        # Pool before phi's last (affine) layer: see the class docstring.
        self._fuse = can_fuse(self.phi, self.aggr_module)
        self._phi_is_mlp = isinstance(self.phi, MLP)

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        reset(self.phi)
        reset(self.rho)
        self.aggr_module.reset_parameters()

    def __call__(self, x: Tensor, index: Optional[Tensor] = None,
                 ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                 dim: int = -2, **kwargs: Any) -> Tensor:
        # torch.fx proxies (PyG's to_hetero tracing) pass through untouched.
        if not isinstance(x, (Tensor, torch.fx.Proxy)):
            raise TypeError(f"'x' must be a torch.Tensor "
                            f"(got {type(x).__name__})")
        if index is None and ptr is None and dim_size is None:
            dim_size = 1  # one set, even when it is empty
        return super().__call__(x, index, ptr=ptr, dim_size=dim_size,
                                dim=dim, **kwargs)

    def forward(
        self,
        x: Tensor,
        index: Optional[Tensor] = None,
        ptr: Optional[Tensor] = None,
        dim_size: Optional[int] = None,
        dim: int = -2,
    ) -> Tensor:
        r"""Forward pass.

        Args:
            x (torch.Tensor): Element features :math:`(N, F_{in})`.
            index (torch.Tensor, optional): Set id of every element (PyG's
                :obj:`batch` vector). (default: :obj:`None`)
            ptr (torch.Tensor, optional): Boundaries of sorted sets, an
                alternative to :obj:`index`. (default: :obj:`None`)
            dim_size (int, optional): Number of sets :math:`B`.
                (default: :obj:`None`)
            dim (int, optional): The element dimension; :obj:`-2` or
                :obj:`0`. (default: :obj:`-2`)
        """
        if not torch.jit.is_scripting():
            check_x(x, channels=self.in_channels)
            if dim not in (-2, 0):
                raise ValueError(f"'dim' must be -2 or 0 (got {dim})")
            index, ptr, dim_size = check_sets(x, index, ptr, dim_size,
                                              batch_name='index')
        index, dim_size = set_index(x, index, ptr, dim_size)

        if torch.jit.is_scripting():
            # TorchScript cannot pass modules to free functions: no fusion.
            if self._phi_is_mlp:
                h = self.phi(x, index, dim_size)
            else:
                h = self.phi(x)
            out = self.aggr_module(h, index, ptr=ptr, dim_size=dim_size)
        else:
            out = phi_pool(self.phi, self.aggr_module, self._fuse, x, index,
                           ptr, dim_size)
        return self.rho(out)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(phi={self.phi}, rho={self.rho}, '
                f'aggr={self.aggr_module})')
