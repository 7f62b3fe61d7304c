from typing import Optional

import torch
from torch import Tensor
from torch.nn import Dropout, Linear

from torch_geometric.nn.inits import reset
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric_deepsets.checks import check_dropout, check_int
from torch_geometric_deepsets.models.equivariant import DeepSetsEquivariant
from torch_geometric_deepsets.pool import AggrType, pooled_width
from torch_geometric_deepsets.sets import SetModule, call_validated


class DeepSetsPointCloud(SetModule):
    r"""The point-cloud classifier of the `"Deep Sets"
    <https://arxiv.org/abs/1703.06114>`_ paper (Sec. 4.2; the authors'
    :obj:`PointClouds/classifier.py`): permutation-equivariant layers in
    the tied, max-normalised form of eq. 23, each followed by :math:`\tanh`,
    max pooling over the points, and a small classifier,

    .. math::
        \mathbf{H}^{(\ell+1)} &= \tanh\left( \left(\mathbf{H}^{(\ell)}
        - \mathbf{1}\, \mathrm{maxpool}(\mathbf{H}^{(\ell)}) \right)
        \mathbf{\Gamma}_\ell + \boldsymbol{\beta}_\ell \right),

        \mathbf{y} &= \mathbf{W}_2\, \mathrm{Dropout}\left(\tanh\left(
        \mathbf{W}_1\, \mathrm{Dropout}\left(\mathrm{maxpool}
        (\mathbf{H}^{(L)})\right) + \mathbf{b}_1\right)\right) +
        \mathbf{b}_2.

    The paper uses :math:`L = 3` layers of width 256, or 512 for clouds of
    5000 points, and dropout :math:`0.5`. The encoder is a
    :class:`~torch_geometric_deepsets.DeepSetsEquivariant` (attribute
    :obj:`encoder`), the classifier a :class:`torch.nn.Sequential`
    (attribute :obj:`head`).

    Args:
        in_channels (int, optional): Features per point, e.g. :obj:`3` for
            coordinates or :obj:`6` with normals, or :obj:`-1` to find it at
            the first call. (default: :obj:`3`)
        num_classes (int, optional): Number of classes.
            (default: :obj:`40`)
        hidden_channels (int, optional): Width of every equivariant layer
            and of the classifier's hidden layer. (default: :obj:`256`)
        num_layers (int, optional): Number of equivariant layers.
            (default: :obj:`3`)
        dropout (float, optional): Dropout probability of the classifier.
            (default: :obj:`0.5`)
        act (str or torch.nn.Module, optional): The activation, also
            :obj:`"elu"` in the authors' code. (default: :obj:`"tanh"`)
        tied (bool, optional): Use the tied layer of eq. 23 (the authors'
            :obj:`PermEqui1`); :obj:`False` gives eq. 22
            (:obj:`PermEqui2`). (default: :obj:`True`)
        aggr (str or Aggregation, optional): The pooling inside the
            equivariant layers. (default: :obj:`"max"`)
        readout (str or Aggregation, optional): The pooling over the points
            before the classifier. (default: :obj:`"max"`)

    Shapes:
        - **input:** points :math:`(*, N, F_{in})`, cloud ids :math:`(N)` or
          boundaries :math:`(B + 1)`
        - **output:** class scores (logits) :math:`(*, B, C)`
    """
    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 40,
        hidden_channels: int = 256,
        num_layers: int = 3,
        dropout: float = 0.5,
        act: str = 'tanh',
        tied: bool = True,
        aggr: AggrType = 'max',
        readout: AggrType = 'max',
    ) -> None:
        super().__init__()
        check_int('in_channels', in_channels, lazy=True)
        for name, value in (('num_classes', num_classes),
                            ('hidden_channels', hidden_channels),
                            ('num_layers', num_layers)):
            check_int(name, value)
        if readout is None:
            raise ValueError("'readout' must be given: the classifier needs "
                             "one row per point cloud")
        check_dropout(dropout)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers

        self.encoder = DeepSetsEquivariant(
            [in_channels] + [hidden_channels] * num_layers, aggr=aggr,
            tied=tied, act=act, plain_last=False, readout=readout)
        # A readout that concatenates (a list of aggregations) widens the
        # pooled features; the classifier takes whatever width it gives.
        pooled = pooled_width(self.encoder.readout, hidden_channels)
        self.head = torch.nn.Sequential(
            Dropout(dropout),
            Linear(pooled, hidden_channels),
            activation_resolver(act),
            Dropout(dropout),
            Linear(hidden_channels, num_classes),
        )

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        self.encoder.reset_parameters()
        reset(self.head)

    def input_layer(self) -> torch.nn.Module:
        return self.encoder.input_layer()

    takes_weight = True

    def forward(self, x: Tensor, batch: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2, weight: Optional[Tensor] = None) -> Tensor:
        r"""The class scores of every point cloud."""
        return self.head(call_validated(self.encoder, x, batch, dim_size,
                                        dim, weight))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.num_classes}, hidden_channels={self.hidden_channels}, '
                f'num_layers={self.num_layers})')
