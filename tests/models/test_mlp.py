r"""Building phi and rho from channel lists (checked, without a
normalisation unless asked), and running a PyG MLP with the set ids its
normalisation reads."""
import pytest
import torch

from tests.helpers import make_batch
from torch_geometric.utils import scatter
from torch_geometric_deepsets import (
    DeepSetsEquivariant,
    DeepSetsInvariant,
)


def test_channel_lists_are_checked_at_construction():
    for bad in ([3], [3, 0], [3, -2, 4], [3, 8.0], [-1, -1]):
        with pytest.raises(ValueError, match="'phi' as a channel list"):
            DeepSetsInvariant(bad, [8, 2])
    with pytest.raises(ValueError, match="'channels' as a channel list"):
        DeepSetsEquivariant([3, -1])


def test_graph_norm_gets_batch_of_its_own_rows():
    # phi's normalisation sees the set of every element (it normalises
    # within each set); rho runs on the set-level rows alone.
    model = DeepSetsInvariant([3, 16, 8], [8, 16, 2], norm='graph_norm')
    x, batch = make_batch([4, 3, 5], 3, shuffle=True)
    out = model(x, batch)
    h = torch.cat([model.phi(x[batch == s]) for s in range(3)])
    order = torch.cat([(batch == s).nonzero().view(-1) for s in range(3)])
    pooled = scatter(h, batch[order], 0, 3, 'sum')
    assert torch.allclose(out, model.rho(pooled), atol=1e-5)



def test_channel_lists_build_mlps_without_norm():
    model = DeepSetsInvariant([3, 8, 8], [8, 2])
    assert all(isinstance(n, torch.nn.Identity)
               for n in model.phi.body.norms)
    assert all(isinstance(n, torch.nn.Identity) for n in model.rho.norms)
    # In training mode a set's output still ignores the rest of the batch.
    model.train()
    x, batch = make_batch([3, 4], 3)
    assert torch.allclose(model(x, batch)[:1], model(x[batch == 0]),
                          atol=1e-6)
