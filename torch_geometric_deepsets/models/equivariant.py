from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric.nn.aggr import Aggregation
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric_deepsets.checks import check_dropout, check_int
from torch_geometric_deepsets.layers import PermutationEquivariantLayer
from torch_geometric_deepsets.models.context import (
    ContextFusion,
    check_fusion,
    joins_after_first_layer,
)
from torch_geometric_deepsets.models.mlp import ActType, check_channels
from torch_geometric_deepsets.pool import AggrType, apply_aggr, resolve_aggr
from torch_geometric_deepsets.sets import (
    ConditionedSetModule,
    SetModule,
    call_validated,
)


def stack_options(act: Optional[torch.nn.Module], dropout: float,
                  readout: Optional[Aggregation] = None) -> str:
    r"""The options of a stack of equivariant layers that differ from the
    defaults, as :meth:`__repr__` shows them: the readout, an activation
    other than ReLU, dropout."""
    extra = ''
    if readout is not None:
        extra += f', readout={readout}'
    if type(act) is not torch.nn.ReLU:
        extra += f', act={act}'
    if dropout > 0:
        extra += f', dropout={dropout}'
    return extra


class _EquivariantStack(SetModule):
    r"""The stack of equivariant layers behind
    :class:`DeepSetsEquivariant` and
    :class:`DeepSetsConditionalEquivariant`, with its context where it has
    one."""
    def __init__(self, channels: List[int], aggr: AggrType, tied: bool,
                 act: ActType, dropout: float, readout: AggrType,
                 plain_last: bool, aggr_kwargs: Optional[Dict[str, Any]],
                 context_channels: Optional[int] = None,
                 fusion: str = 'concat') -> None:
        super().__init__()
        channels = check_channels(channels, 'channels')
        check_dropout(dropout)
        self.channels = channels
        self.tied = tied
        self.dropout = dropout
        self.plain_last = plain_last

        widths = list(channels)
        self.context_fusion: Optional[ContextFusion] = None
        if context_channels is not None:
            at = 1 if joins_after_first_layer(fusion, channels) else 0
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

    @property
    def input_width(self) -> int:
        return self.channels[0]

    def input_layer(self) -> torch.nn.Module:
        return self.layers[0]

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        for layer in self.layers:
            layer.reset_parameters()
        if self.context_fusion is not None:
            self.context_fusion.reset_parameters()
        if self.readout is not None:
            self.readout.reset_parameters()

    takes_weight = True

    def _run(self, x: Tensor, context: Optional[Tensor], index: Tensor,
             ptr: Optional[Tensor], dim_size: int, dim: int,
             weight: Optional[Tensor]) -> Tensor:
        fusion = self.context_fusion
        after_first = fusion is not None and joins_after_first_layer(
            fusion.fusion, self.channels)
        if fusion is not None and not after_first:
            x = fusion(x, context, index)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = call_validated(layer, x, index, dim_size, dim, weight)
            if i < last or not self.plain_last:
                if self.act is not None:
                    x = self.act(x)
                x = F.dropout(x, p=self.dropout, training=self.training)
            if i == 0 and after_first:
                x = fusion(x, context, index)
        if self.readout is not None:
            x = apply_aggr(self.readout, x, index, ptr, dim_size, dim,
                           weight=weight)
        return x

    def __repr__(self) -> str:
        extra = stack_options(self.act, self.dropout, self.readout)
        if not self.plain_last:
            extra += ', plain_last=False'
        if self.context_fusion is not None:
            extra += (f", context_channels="
                      f"{self.context_fusion.context_channels}, "
                      f"fusion='{self.context_fusion.fusion}'")
        return (f'{self.__class__.__name__}({self.channels}, '
                f'aggr={self.layers[0].aggr_module}, tied={self.tied}'
                f'{extra})')


class DeepSetsEquivariant(_EquivariantStack):
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

    :class:`DeepSetsConditionalEquivariant` is the same stack conditioned on
    a per-set context.

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
        act: ActType = 'relu',
        dropout: float = 0.0,
        readout: AggrType = None,
        plain_last: bool = True,
        aggr_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(channels, aggr, tied, act, dropout, readout,
                         plain_last, aggr_kwargs)

    def forward(self, x: Tensor, batch: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2, weight: Optional[Tensor] = None) -> Tensor:
        r"""The stack on every element (pooled with :obj:`readout`, where
        given)."""
        return self._run(x, None, batch, ptr, dim_size, dim, weight)


class DeepSetsConditionalEquivariant(_EquivariantStack,
                                     ConditionedSetModule):
    r"""The stack of :class:`DeepSetsEquivariant` conditioned on a per-set
    context :math:`\mathbf{z}_s` (the :math:`\phi(\mathbf{x}_m \mid
    \mathbf{z})` of the `"Deep Sets" <https://arxiv.org/abs/1703.06114>`_
    paper, for set-to-set maps). The context joins as in
    :class:`~torch_geometric_deepsets.DeepSetsConditional`: concatenated to
    the elements (:obj:`"concat"`), added to them after a linear map
    (:obj:`"add"`), or FiLM of the first layer's output (:obj:`"film"`; of
    the input for a one-layer stack). For every fixed :math:`\mathbf{z}`
    the map stays equivariant.

    Like every conditioned model of the package it takes the context as its
    second argument: :obj:`model(x, context, batch)`.

    Args:
        channels (List[int]): :obj:`[in, hidden..., out]` as in
            :class:`DeepSetsEquivariant`; :obj:`in` is the width of the
            elements, without the context.
        context_channels (int): Width :math:`C` of the context, or
            :obj:`-1` to find it at the first call.
        fusion (str, optional): How the context joins: :obj:`"concat"`,
            :obj:`"film"` or :obj:`"add"`. (default: :obj:`"concat"`)
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
            dropout also follow the last layer. (default: :obj:`True`)
        aggr_kwargs (dict, optional): Arguments of a string :obj:`aggr`.
            (default: :obj:`None`)

    Shapes:
        - **input:** elements :math:`(*, N, F_{in})`, context :math:`(B, C)`
          or :math:`(*, B, C)`, set ids :math:`(N)` or boundaries
          :math:`(B + 1)`
        - **output:** :math:`(*, N, F_{out})`, or :math:`(*, B, F_{out}')`
          with :obj:`readout`
    """
    #: The context is gathered to the rows of a matrix.
    folds_leading_dims = True

    def __init__(
        self,
        channels: List[int],
        context_channels: int,
        fusion: str = 'concat',
        aggr: AggrType = 'sum',
        tied: bool = False,
        act: ActType = 'relu',
        dropout: float = 0.0,
        readout: AggrType = None,
        plain_last: bool = True,
        aggr_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        check_int('context_channels', context_channels, lazy=True)
        check_fusion(fusion)
        super().__init__(channels, aggr, tied, act, dropout, readout,
                         plain_last, aggr_kwargs, context_channels, fusion)

    @property
    def context_channels(self) -> int:
        return self.context_fusion.context_channels

    def context_width(self) -> Optional[int]:
        return self.context_fusion.expected_channels(self.layers[0].lin,
                                                     self.channels[0])

    def forward(self, x: Tensor, context: Tensor,
                batch: Optional[Tensor] = None, ptr: Optional[Tensor] = None,
                dim_size: Optional[int] = None, dim: int = -2,
                weight: Optional[Tensor] = None) -> Tensor:
        r"""The conditioned stack on every element (pooled with
        :obj:`readout`, where given)."""
        return self._run(x, context, batch, ptr, dim_size, dim, weight)
