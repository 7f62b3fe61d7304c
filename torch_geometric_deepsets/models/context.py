r"""Joining a per-set context to the rows of its set: concatenation, FiLM or
an added projection (:class:`ContextFusion`)."""
from typing import List, Optional

import torch
from torch import Tensor

from torch_geometric.nn.dense.linear import Linear as PygLinear
from torch_geometric.nn.dense.linear import is_uninitialized_parameter

FUSIONS = ('concat', 'film', 'add')


def check_fusion(fusion: object) -> None:
    if fusion not in FUSIONS:
        raise ValueError(f"Unknown 'fusion' {fusion!r}; valid options are "
                         f"{', '.join(repr(f) for f in FUSIONS)}")


class ContextFusion(torch.nn.Module):
    r"""Joins a per-set context :math:`\mathbf{z}_s` to the rows
    :math:`\mathbf{h}_i` of set :math:`s`:

    * :obj:`"concat"`: :math:`[\mathbf{h}_i \,\Vert\, \mathbf{z}_s]`;
    * :obj:`"film"`: :math:`\mathbf{h}_i \odot (1 +
      \boldsymbol{\gamma}(\mathbf{z}_s)) + \boldsymbol{\beta}(\mathbf{z}_s)`
      with :math:`[\boldsymbol{\gamma} \Vert \boldsymbol{\beta}]` a linear
      map of :math:`\mathbf{z}_s` (identity at :math:`\gamma = \beta = 0`);
    * :obj:`"add"`: :math:`\mathbf{h}_i + \mathbf{z}_s \mathbf{W}`.

    Projections of the context are computed once per set and then gathered
    to the rows.

    Args:
        fusion (str): :obj:`"concat"`, :obj:`"film"` or :obj:`"add"`.
        context_channels (int): Width :math:`C` of the context, or
            :obj:`-1` to find it at the first call.
        channels (int, optional): Width of :math:`\mathbf{h}_i`, needed by
            :obj:`"film"` and :obj:`"add"`. (default: :obj:`None`)
    """
    def __init__(self, fusion: str, context_channels: int,
                 channels: Optional[int] = None) -> None:
        super().__init__()
        check_fusion(fusion)
        self.fusion = fusion
        self.context_channels = context_channels
        self.lin = None
        if fusion != 'concat':
            assert channels is not None and channels > 0
            width = 2 * channels if fusion == 'film' else channels
            self.lin = (PygLinear(-1, width) if context_channels == -1 else
                        torch.nn.Linear(context_channels, width))
        self.reset_parameters()

    def expected_channels(self, after: Optional[torch.nn.Module] = None,
                          channels: Optional[int] = None) -> Optional[int]:
        r"""The context width this module takes: :obj:`context_channels`,
        or for a lazy width the one the first call found (:obj:`None`
        before it). For :obj:`"concat"` that is what the affine layer
        :obj:`after` it takes beyond the :obj:`channels` element
        features."""
        if self.context_channels > 0:
            return self.context_channels
        if self.lin is not None:  # "film" and "add": a lazy projection
            weight = self.lin.weight
            return None if is_uninitialized_parameter(weight) else \
                weight.size(1)
        if after is None or channels is None or channels < 0 or \
                is_uninitialized_parameter(after.weight):
            return None
        return after.weight.size(1) - channels

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        if self.lin is not None:
            self.lin.reset_parameters()

    def forward(self, h: Tensor, context: Tensor, index: Tensor) -> Tensor:
        if self.lin is None:
            return torch.cat([h, context.index_select(0, index)], dim=-1)
        z = self.lin(context)
        if self.fusion == 'add':
            return h + z.index_select(0, index)
        gamma, beta = z.chunk(2, dim=-1)
        scale = (1.0 + gamma).index_select(0, index)
        return torch.addcmul(beta.index_select(0, index), h, scale)


def joins_after_first_layer(fusion: str, channels: List[int]) -> bool:
    r"""Whether a context joins after the first layer of a network with
    channel list :obj:`channels`: FiLM modulates the first layer's output
    where there is more than one layer; concatenation and addition (and
    FiLM of a single layer) join the input."""
    return fusion == 'film' and len(channels) > 2
