r"""Which element networks :math:`\phi` can run chunk by chunk: those whose
output for a row does not depend on the other rows of its call."""
from typing import Callable, Optional

import torch
from torch import Tensor

from torch_geometric.nn import MLP
from torch_geometric_deepsets.models.mlp import SplitMLP


def check_phi(phi: Optional[torch.nn.Module]) -> None:
    r"""Refuses a :math:`\phi` whose output for a row depends on the other
    rows of its call: a chunk would then change it."""
    if phi is None:
        return
    for module in phi.modules():
        if isinstance(module, MLP) and module.supports_norm_batch:
            raise ValueError(
                f"streaming cannot run 'phi' with {module.norms[0]}: it "
                f"normalises each set with statistics of the whole set, "
                f"which a chunk does not hold; use norm=None (or a "
                f"normalisation of single rows, such as layer_norm in "
                f"mode 'node')")
        if type(module).__module__.startswith('torch_geometric.nn.norm') \
                and getattr(module, 'mode', None) != 'node' \
                and type(module).__name__ != 'BatchNorm':
            raise ValueError(
                f"streaming cannot run 'phi' with {type(module).__name__}: "
                f"it normalises with statistics over many rows, which "
                f"differ between a chunk and the whole set")


def check_batch_norm(phi: Optional[torch.nn.Module]) -> None:
    r"""Refuses batch normalisation in training mode, which normalises with
    the statistics of its input (checked at every chunk: the mode can
    change between calls)."""
    if phi is None:
        return
    for module in phi.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and \
                module.training:
            raise ValueError(
                f"streaming cannot run 'phi' with {type(module).__name__} "
                f"in training mode: it normalises with the statistics of "
                f"its input, which differ between a chunk and the whole "
                f"set; call phi.eval() on it, or drop it")


def hidden_layers(phi: torch.nn.Module) -> Callable[[Tensor], Tensor]:
    r"""The layers of :obj:`phi` in front of its last affine layer."""
    if isinstance(phi, SplitMLP):
        return phi.hidden
    return phi[:-1]
