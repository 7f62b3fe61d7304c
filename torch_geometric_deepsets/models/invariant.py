from typing import Any, Dict, Optional

import torch
from torch import Tensor

from torch_geometric.nn.inits import reset
from torch_geometric_deepsets.checks import check_dropout
from torch_geometric_deepsets.models.mlp import (
    ActType,
    ModuleSpec,
    build_phi,
    build_rho,
)
from torch_geometric_deepsets.models.phi_pool import phi_pool
from torch_geometric_deepsets.models.widths import (
    check_rho_input,
    in_channels_of,
    out_channels_of,
)
from torch_geometric_deepsets.pool import AggrType, pooled_width, resolve_aggr
from torch_geometric_deepsets.sets import SetAggregation


class DeepSetsInvariant(SetAggregation):
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
    channel list, or a :class:`torch.nn.Sequential` whose last module is a
    :class:`torch.nn.Linear` or PyG :class:`~torch_geometric.nn.dense.Linear`),
    the model pools *before* that layer and
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
        - **input:** elements :math:`(*, N, F_{in})`, set ids :math:`(N)`
          or boundaries :math:`(B + 1)`
        - **output:** :math:`(*, B, F_{out})`
    """
    def __init__(
        self,
        phi: ModuleSpec,
        rho: ModuleSpec,
        aggr: AggrType = 'sum',
        act: ActType = 'relu',
        norm: Optional[str] = None,
        dropout: float = 0.0,
        aggr_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        check_dropout(dropout)
        self.phi = build_phi(phi, 'phi', act, norm, dropout)
        self.rho = build_rho(rho, 'rho', act, norm, dropout)
        self.aggr_module = resolve_aggr(aggr, aggr_kwargs)
        self.in_channels = in_channels_of(self.phi)

        check_rho_input(self.rho, pooled_width(self.aggr_module,
                                               out_channels_of(self.phi)),
                        self.aggr_module)

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        reset(self.phi)
        reset(self.rho)
        self.aggr_module.reset_parameters()

    #: Pooling alone runs on :obj:`ptr`; the set ids are built only where
    #: phi's normalisation or the aggregation needs them.
    needs_index = False

    def input_layer(self) -> torch.nn.Module:
        return self.phi

    def elements_along_any_dim(self) -> bool:
        # Without a known input width phi is not known to read the last
        # dimension as features, so it may hold the elements, as PyG's
        # aggregations allow.
        return self.in_channels is None

    takes_weight = True

    def forward(self, x: Tensor, index: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2, max_num_elements: Optional[int] = None,
                weight: Optional[Tensor] = None) -> Tensor:
        r""":math:`\rho` of the pooled :math:`\phi` of every set."""
        out = phi_pool(self.phi, self.aggr_module, x, index, ptr, dim_size,
                       dim, max_num_elements, weight)
        check_rho_input(self.rho, out.size(-1), self.aggr_module)
        # rho runs on set-level rows: normalisations see them as one batch.
        return self.rho(out)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(phi={self.phi}, rho={self.rho}, '
                f'aggr={self.aggr_module})')
