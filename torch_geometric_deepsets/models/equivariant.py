from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric.nn.resolver import activation_resolver
from torch_geometric_deepsets.layers import PermutationEquivariantLayer
from torch_geometric_deepsets.models._utils import check_dropout
from torch_geometric_deepsets.pool import (
    AggrType,
    apply_aggr,
    call_with_sets,
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

    Args:
        channels (List[int]): :obj:`[in, hidden..., out]`, at least two
            entries; one layer per consecutive pair.
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

    Shapes:
        - **input:** elements :math:`(*, N, F_{in})`, set ids :math:`(N)`
          or boundaries :math:`(B + 1)`
        - **output:** :math:`(*, N, F_{out})`, or :math:`(*, B, F_{out}')`
          with :obj:`readout`
    """
    def __init__(
        self,
        channels: List[int],
        aggr: AggrType = 'sum',
        tied: bool = False,
        act: Union[str, torch.nn.Module, None] = 'relu',
        dropout: float = 0.0,
        readout: AggrType = None,
        plain_last: bool = True,
        aggr_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        if not isinstance(channels, (list, tuple)) or len(channels) < 2:
            raise ValueError(f"'channels' must be a list [in, ..., out] of at "
                             f"least two ints (got {channels!r})")
        check_dropout(dropout)
        self.channels = list(channels)
        self.tied = tied
        self.dropout = dropout
        self.plain_last = plain_last
        self.layers = torch.nn.ModuleList([
            PermutationEquivariantLayer(c_in, c_out, aggr=aggr, tied=tied,
                                        aggr_kwargs=aggr_kwargs)
            for c_in, c_out in zip(self.channels[:-1], self.channels[1:])
        ])
        self.act = activation_resolver(act) if act is not None else None
        self.readout = resolve_aggr(readout) if readout is not None else None

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        for layer in self.layers:
            layer.reset_parameters()
        if self.readout is not None:
            self.readout.reset_parameters()

    def __call__(self, x: Tensor, batch: Optional[Tensor] = None,
                 ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                 dim: int = -2) -> Tensor:
        return call_with_sets(self, x, (), batch, ptr, dim_size, dim,
                              'batch', self.channels[0])

    def forward(
        self,
        x: Tensor,
        batch: Optional[Tensor] = None,
        ptr: Optional[Tensor] = None,
        dim_size: Optional[int] = None,
        dim: int = -2,
    ) -> Tensor:
        r"""Forward pass; arguments as in
        :meth:`PermutationEquivariantLayer.forward`."""
        # Every layer gathers set rows back to the elements: find the set of
        # every row once.
        index = element_index(x, batch, ptr, dim)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, index, dim_size=dim_size, dim=dim)
            if i < last or not self.plain_last:
                if self.act is not None:
                    x = self.act(x)
                x = F.dropout(x, p=self.dropout, training=self.training)
        if self.readout is not None:
            x = apply_aggr(self.readout, x, index, ptr, dim_size, dim)
        return x

    def __repr__(self) -> str:
        extra = ''
        if self.readout is not None:
            extra += f', readout={self.readout}'
        if type(self.act) is not torch.nn.ReLU:
            extra += f', act={self.act}'
        if self.dropout > 0:
            extra += f', dropout={self.dropout}'
        if not self.plain_last:
            extra += ', plain_last=False'
        return (f'{self.__class__.__name__}({self.channels}, '
                f'aggr={self.layers[0].aggr_module}, tied={self.tied}'
                f'{extra})')
