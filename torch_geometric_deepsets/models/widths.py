r"""The input and output widths of element and set networks, where their
structure shows them, and the check that :math:`\rho` takes what pooling
:math:`\phi` gives."""
from typing import Optional

import torch

from torch_geometric.nn import MLP
from torch_geometric.nn.aggr import Aggregation
from torch_geometric.nn.dense.linear import Linear as PygLinear
from torch_geometric_deepsets.models.mlp import SplitMLP

#: The affine layers whose weight and bias the pooling rewrite reads.
AFFINE = (torch.nn.Linear, PygLinear)


def in_channels_of(module: torch.nn.Module) -> Optional[int]:
    r"""Input width of :obj:`module` where it is known (:obj:`-1`: lazy)."""
    if isinstance(module, (MLP, SplitMLP)):
        return module.in_channels
    if isinstance(module, torch.nn.Linear):
        return module.in_features
    if isinstance(module, PygLinear):
        return module.in_channels
    if isinstance(module, torch.nn.Embedding):
        return None
    if isinstance(module, torch.nn.Sequential) and len(module) > 0:
        return in_channels_of(module[0])
    return None


def first_linear(module: Optional[torch.nn.Module]
                 ) -> Optional[torch.nn.Module]:
    r"""The affine layer that first sees the input of :obj:`module`, where
    the module's structure shows it."""
    if isinstance(module, AFFINE):
        return module
    if isinstance(module, SplitMLP):
        return first_linear(module.body) if module.body is not None \
            else module.lin
    if isinstance(module, MLP):
        return module.lins[0]
    if isinstance(module, torch.nn.Sequential) and len(module) > 0:
        return first_linear(module[0])
    return None


def out_channels_of(module: torch.nn.Module) -> Optional[int]:
    r"""Output width of :obj:`module` where it is known."""
    if isinstance(module, (MLP, SplitMLP)):
        return module.out_channels
    if isinstance(module, torch.nn.Linear):
        return module.out_features
    if isinstance(module, PygLinear):
        return module.out_channels
    if isinstance(module, torch.nn.Embedding):
        return module.embedding_dim
    if isinstance(module, torch.nn.Sequential) and len(module) > 0:
        for child in reversed(module):
            width = out_channels_of(child)
            if width is not None:
                return width
            if not _keeps_width(child):
                return None
    return None


def check_rho_input(rho: torch.nn.Module, pooled: Optional[int],
                    aggr: Optional[Aggregation], extra: int = 0) -> None:
    r"""Raises a :class:`ValueError` naming both widths when :obj:`rho`,
    whose input width is known, cannot take the :obj:`pooled` features per
    set of :math:`\phi` (pooled with :obj:`aggr`, where given) plus
    :obj:`extra` context features. Models check when they are built, where
    :math:`\phi`'s width is known (:obj:`pooled` is :obj:`None` where it is
    not), and at every call, where a custom :math:`\phi` shows it."""
    expected = in_channels_of(rho)
    if pooled is None or expected is None or expected <= 0 or \
            expected == pooled + extra:
        return
    source = "'phi'" if aggr is None else f"'phi' pooled with {aggr}"
    context = f' + {extra} context' if extra else ''
    raise ValueError(f"'rho' takes {expected} input channels but {source} "
                     f"gives {pooled}{context} features per set; make rho's "
                     f"input width {pooled + extra}")


def _keeps_width(module: torch.nn.Module) -> bool:
    return isinstance(module, (torch.nn.Dropout, torch.nn.Identity,
                               torch.nn.ReLU, torch.nn.Tanh, torch.nn.ELU,
                               torch.nn.GELU, torch.nn.LeakyReLU,
                               torch.nn.Sigmoid, torch.nn.SiLU))
