r"""One instance of every model, and how to call it, for the hardening
tests."""
import torch

from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsEquivariant,
    DeepSetsInvariant,
    PermutationEquivariantLayer,
)

CONTEXT = 2
KINDS = ['layer', 'layer_tied', 'invariant', 'equivariant', 'equivariant_set',
         'conditional_concat', 'conditional_film', 'conditional_add']


def build(kind, aggr, in_channels=3, shallow_phi=False):
    r"""With :obj:`shallow_phi`, phi is a single linear layer, so identical
    elements with dyadic weights give bitwise-identical phi outputs (exact
    ties for the max)."""
    phi = [in_channels, 8] if shallow_phi else [in_channels, 8, 8]
    if kind == 'layer':
        return PermutationEquivariantLayer(in_channels, 4, aggr=aggr)
    if kind == 'layer_tied':
        return PermutationEquivariantLayer(in_channels, 4, aggr=aggr,
                                           tied=True)
    if kind == 'invariant':
        return DeepSetsInvariant(phi, [8, 8, 2], aggr=aggr,
                                 act='tanh')
    if kind == 'equivariant':
        return DeepSetsEquivariant([in_channels, 8, 2], aggr=aggr, act='tanh')
    if kind == 'equivariant_set':
        return DeepSetsEquivariant([in_channels, 8, 2], aggr=aggr, act='tanh',
                                   readout=aggr)
    fusion = kind.split('_')[1]
    return DeepSetsConditional(phi, [8, 2],
                               context_channels=CONTEXT, fusion=fusion,
                               aggr=aggr, act='tanh')


def is_per_element(kind):
    return kind in ('layer', 'layer_tied', 'equivariant')


def run(model, kind, x, batch, dim_size, context=None):
    if kind.startswith('conditional'):
        if context is None:
            context = torch.linspace(-1, 1, dim_size * CONTEXT,
                                     dtype=x.dtype, device=x.device)
            context = context.view(dim_size, CONTEXT)
        return model(x, context, batch, dim_size=dim_size)
    return model(x, batch, dim_size=dim_size)
