r"""Scripted models skip the input checks, so they work out the number of
sets themselves; it must match eager mode, empty sets included."""
import pytest
import torch

from torch_geometric_deepsets import (
    DeepSetsEquivariant,
    DeepSetsInvariant,
    PermutationEquivariantLayer,
)

MODELS = {
    'layer': lambda: PermutationEquivariantLayer(3, 4, aggr='max'),
    'invariant': lambda: DeepSetsInvariant([3, 4], [4, 2]),
    'equivariant_set': lambda: DeepSetsEquivariant([3, 4], readout='sum'),
}


@pytest.mark.parametrize('kind', MODELS)
@pytest.mark.parametrize('rows,ptr', [
    (3, [0, 3, 3]),  # a trailing empty set
    (3, [0, 0, 3]),  # a leading one
    (0, [0, 0]),  # one empty set, no rows
    (0, None),  # no rows and an empty batch vector: no sets
])
def test_scripted_counts_sets_like_eager(kind, rows, ptr):
    torch.manual_seed(0)
    model = MODELS[kind]().eval()
    scripted = torch.jit.script(model)
    x = torch.randn(rows, 3)
    if ptr is None:
        kwargs = {'batch' if kind != 'invariant' else 'index':
                  torch.zeros(0, dtype=torch.long)}
    else:
        kwargs = {'ptr': torch.tensor(ptr)}
    expected = model(x, **kwargs)
    out = scripted(x, **kwargs)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-6)
