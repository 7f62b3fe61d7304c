r"""The per-set context in PyG pipelines: second in every conditioned model,
it passes through PyG's positional :class:`Sequential` signatures and
through :func:`to_hetero`."""
import torch
from torch.nn import Linear, ReLU

from tests.helpers import molecule
from torch_geometric.data import Batch
from torch_geometric.nn import SAGEConv, Sequential, to_hetero
from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsConditionalEquivariant,
)
from torch_geometric_deepsets.testing import assert_permutation_invariant


def test_conditioned_models_inside_pyg_sequential():
    encoder = DeepSetsConditionalEquivariant([3, 8, 8], 2, fusion='film')
    readout = DeepSetsConditional([8, 16], [16, 1], 2, fusion='add')
    model = Sequential('x, context, batch', [
        (encoder, 'x, context, batch -> x'),
        ReLU(),
        (readout, 'x, context, batch -> x'),
    ])
    x, batch = torch.randn(9, 3), torch.tensor([2, 0, 0, 1, 2, 2, 1, 0, 2])
    context = torch.randn(3, 2)
    out = model(x, context, batch)
    assert out.shape == (3, 1)
    expected = readout(encoder(x, context, batch).relu(), context, batch)
    torch.testing.assert_close(out, expected)
    assert_permutation_invariant(model, x, batch,
                                 set_inputs={'context': context})


class HeteroConditionalReadout(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = SAGEConv((-1, -1), 8)
        self.readout = DeepSetsConditional([8, 16], [16, 8], 2)
        self.lin = Linear(8, 2)

    def forward(self, x, edge_index, context, batch):
        x = self.conv(x, edge_index).relu()
        return self.lin(self.readout(x, context, batch))


def test_conditioned_readout_under_to_hetero():
    generator = torch.Generator().manual_seed(0)
    batch = Batch.from_data_list([molecule(4, 2, generator),
                                  molecule(3, 3, generator)])
    # One context row per molecule, given to every node type's readout.
    context = torch.randn(2, 2, generator=generator)
    context_dict = {node_type: context for node_type in batch.node_types}
    model = to_hetero(HeteroConditionalReadout(), batch.metadata(),
                      aggr='sum')
    out = model(batch.x_dict, batch.edge_index_dict, context_dict,
                batch.batch_dict)
    # PyG sums only Aggregations over node types: a conditioned model is a
    # set module, copied per node type, with one output per node type.
    assert set(out) == set(batch.node_types)
    for node_type in batch.node_types:
        h = sum(model.conv['__'.join(edge_type)](
            (batch[edge_type[0]].x, batch[node_type].x),
            batch[edge_type].edge_index) for edge_type in batch.edge_types
                if edge_type[-1] == node_type)
        pooled = model.readout[node_type](h.relu(), context,
                                          batch[node_type].batch)
        assert out[node_type].shape == (2, 2)
        torch.testing.assert_close(out[node_type],
                                   model.lin[node_type](pooled))
