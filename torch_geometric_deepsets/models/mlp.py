r"""Element and set networks from channel lists: building :math:`\phi`
(:class:`SplitMLP`) and :math:`\rho`, and calling an element network with
the batch vector where its normalisations use it (:func:`run`). What their
widths are is :mod:`~torch_geometric_deepsets.models.widths`'s; the fast
path of plain ReLU networks is
:mod:`~torch_geometric_deepsets.models.relu_stack`'s."""
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor

from torch_geometric.nn import MLP
from torch_geometric.nn.dense.linear import Linear as PygLinear
from torch_geometric_deepsets.checks import is_int
from torch_geometric_deepsets.grouping import element_index
from torch_geometric_deepsets.models.relu_stack import (
    relu_stack,
    relu_stack_applies,
)

ModuleSpec = Union[Sequence[int], torch.nn.Module]
ActType = Union[str, torch.nn.Module, None]

def check_channels(spec: Sequence[int], name: str) -> List[int]:
    r"""Validates a channel list :obj:`[in, hidden..., out]`: at least two
    entries, positive ints, the first one :obj:`-1` for a lazy input width
    (found at the first call, as PyG's :class:`MLP` does)."""
    channels = list(spec) if isinstance(spec, (list, tuple)) else spec
    ok = isinstance(channels, list) and len(channels) >= 2 and all(
        is_int(c) for c in channels)
    if ok:
        ok = (channels[0] > 0 or channels[0] == -1) and all(
            c > 0 for c in channels[1:])
    if not ok:
        raise ValueError(f"'{name}' as a channel list needs at least two "
                         f"ints [in, ..., out], all positive except a lazy "
                         f"input width of -1 (got {channels})")
    return [int(c) for c in channels]


class SplitMLP(torch.nn.Module):
    r""":math:`\phi` built from a channel list :obj:`[in, hidden..., out]`:
    the same network as :obj:`torch_geometric.nn.MLP(channels)` (a PyG
    :class:`~torch_geometric.nn.models.MLP` for the hidden layers, with
    activation, normalisation and dropout after each, then a plain affine
    output layer), kept as :obj:`body` and :obj:`lin` so that sum and mean
    pooling can move in front of :obj:`lin`.

    Args:
        channels (List[int]): :obj:`[in, hidden..., out]`; :obj:`in` may be
            :obj:`-1` (lazy).
        act (str or torch.nn.Module, optional): The activation.
            (default: :obj:`"relu"`)
        norm (str, optional): The normalisation of hidden layers.
            (default: :obj:`None`)
        dropout (float, optional): Dropout after hidden layers.
            (default: :obj:`0.0`)
    """
    def __init__(self, channels: List[int], act: ActType = 'relu',
                 norm: Optional[str] = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.channel_list = list(channels)
        self.body = None
        if len(channels) > 2:
            self.body = MLP(channels[:-1], act=act, norm=norm,
                            dropout=dropout, plain_last=False)
        self.lin = PygLinear(channels[-2], channels[-1])

    @property
    def in_channels(self) -> int:
        return self.channel_list[0]

    @property
    def out_channels(self) -> int:
        return self.channel_list[-1]

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        if self.body is not None:
            self.body.reset_parameters()
        self.lin.reset_parameters()

    def hidden(self, x: Tensor, batch: Optional[Tensor] = None,
               batch_size: Optional[int] = None) -> Tensor:
        r"""The input of :obj:`lin`."""
        if self.body is None:
            return x
        if relu_stack_applies(self.body):
            return relu_stack(self.body, x)
        return self.body(x, batch, batch_size)

    def forward(self, x: Tensor, batch: Optional[Tensor] = None,
                batch_size: Optional[int] = None) -> Tensor:
        return self.lin(self.hidden(x, batch, batch_size))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({str(self.channel_list)[1:-1]})'


def build_phi(spec: ModuleSpec, name: str, act: ActType = 'relu',
              norm: Optional[str] = None, dropout: float = 0.0,
              extra_in_channels: int = 0) -> torch.nn.Module:
    r"""The element network from :obj:`spec`: a channel list becomes a
    :class:`SplitMLP` (no normalisation unless asked, since PyG's default
    batch norm would make one set's output depend on the other sets of a
    training batch), widened by :obj:`extra_in_channels` (:obj:`-1`: by a
    width found at the first call, which makes the input lazy); a module is
    used as it is."""
    return _build(SplitMLP, spec, name, act, norm, dropout,
                  extra_in_channels)


def build_rho(spec: ModuleSpec, name: str, act: ActType = 'relu',
              norm: Optional[str] = None, dropout: float = 0.0,
              extra_in_channels: int = 0) -> torch.nn.Module:
    r"""The set network from :obj:`spec`: a channel list becomes a PyG
    :class:`~torch_geometric.nn.models.MLP`, widened by
    :obj:`extra_in_channels`; a module is used as it is."""
    return _build(MLP, spec, name, act, norm, dropout, extra_in_channels)


def _build(cls: type, spec: ModuleSpec, name: str, act: ActType,
           norm: Optional[str], dropout: float,
           extra_in_channels: int) -> torch.nn.Module:
    if isinstance(spec, torch.nn.Module):
        return spec
    if isinstance(spec, (list, tuple)):
        channels = check_channels(spec, name)
        if channels[0] > 0:
            # A lazy extra width makes the whole input width lazy.
            channels[0] = -1 if extra_in_channels < 0 else \
                channels[0] + extra_in_channels
        return cls(channels, act=act, norm=norm, dropout=dropout)
    raise TypeError(f"'{name}' must be a list of channels or a "
                    f"torch.nn.Module (got {type(spec).__name__})")


def _uses_batch(module: torch.nn.Module) -> bool:
    r"""Whether PyG's :class:`MLP` passes the batch vector to the
    normalisation layers of :obj:`module` (pinned by
    ``test_mlp_passes_the_batch_vector_to_norms_that_take_it``)."""
    if isinstance(module, SplitMLP):
        module = module.body
    return isinstance(module, MLP) and module.supports_norm_batch


def run(module: torch.nn.Module, x: Tensor, index: Optional[Tensor],
        ptr: Optional[Tensor], dim_size: int, dim: int) -> Tensor:
    r"""Runs an element-level :obj:`module` on :obj:`x`, with the set of
    every row for the normalisation layers of PyG MLPs that use it."""
    if isinstance(module, MLP) and relu_stack_applies(module):
        return relu_stack(module, x)
    if isinstance(module, (MLP, SplitMLP)):
        batch = None
        if _uses_batch(module):
            batch = element_index(x, index, ptr, dim)
        return module(x, batch, dim_size)
    return module(x)
