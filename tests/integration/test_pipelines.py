r"""Deep Sets inside PyG pipelines: graph readout (``nn.Sequential``,
``to_hetero``, ``explain.Explainer``), aggregation inside message passing,
and point-cloud datasets loaded through :class:`ToSet`."""
import pytest
import torch
import torch.nn.functional as F
from torch.nn import Linear, ReLU

import torch_geometric.transforms as T
from tests.helpers import molecule
from torch_geometric import EdgeIndex
from torch_geometric.data import Batch
from torch_geometric.datasets import GeometricShapes, ModelNet, ShapeNet
from torch_geometric.explain import Explainer, GNNExplainer
from torch_geometric.loader import DataLoader
from torch_geometric.nn import (
    GCNConv,
    GraphConv,
    SAGEConv,
    Sequential,
    to_hetero,
)
from torch_geometric.utils import scatter
from torch_geometric_deepsets import (
    DeepSetsEquivariant,
    DeepSetsInvariant,
    DeepSetsPointCloud,
    PermutationEquivariantLayer,
    ToSet,
)
from torch_geometric_deepsets.testing import (
    assert_permutation_equivariant,
    write_geometric_shapes,
    write_modelnet,
    write_shapenet,
)


def small_graphs():
    r"""Three graphs of 3, 4 and 2 nodes with 3 features."""
    x = torch.randn(9, 3)
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4, 5, 6, 7, 8],
                               [1, 0, 2, 1, 4, 5, 6, 3, 8, 7]])
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2])
    return x, edge_index, batch


def relabel(x, edge_index, batch, perm):
    r"""The same graphs with node :obj:`perm[k]` renamed to :obj:`k`."""
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel())
    return x[perm], inverse[edge_index], batch[perm]


# 1. Global readout ###########################################################


def test_readout_inside_pyg_sequential():
    encoder, readout = GCNConv(3, 8), DeepSetsInvariant(phi=[8, 16],
                                                        rho=[16, 2])
    model = Sequential('x, edge_index, batch', [
        (encoder, 'x, edge_index -> x'),
        ReLU(),
        (readout, 'x, batch -> x'),
    ])
    x, edge_index, batch = small_graphs()
    out = model(x, edge_index, batch)
    assert out.shape == (3, 2)
    expected = readout(encoder(x, edge_index).relu(), batch)
    assert torch.allclose(out, expected)
    # A graph-level model: renaming the nodes changes nothing.
    perm = torch.randperm(9)
    assert torch.allclose(model(*relabel(x, edge_index, batch, perm)), out,
                          atol=1e-6)


class HeteroReadoutGNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = SAGEConv((-1, -1), 8)
        self.readout = DeepSetsInvariant(phi=[8, 16], rho=[16, 8])
        # to_hetero needs a module after a graph-level readout: with the
        # readout as the very output it fails in PyG itself (KeyError).
        self.lin = Linear(8, 2)

    def forward(self, x, edge_index, batch):
        x = self.conv(x, edge_index).relu()
        return self.lin(self.readout(x, batch))


def test_readout_under_to_hetero():
    generator = torch.Generator().manual_seed(0)
    batch = Batch.from_data_list([molecule(4, 2, generator),
                                  molecule(3, 3, generator)])
    model = to_hetero(HeteroReadoutGNN(), batch.metadata(), aggr='sum')
    out = model(batch.x_dict, batch.edge_index_dict, batch.batch_dict)
    assert out.shape == (2, 2)
    # to_hetero copies the convolution per edge type (summed per target
    # node type) and the readout per node type (summed over node types).
    pooled = 0
    for node_type in batch.node_types:
        h = sum(model.conv['__'.join(edge_type)](
            (batch[edge_type[0]].x, batch[node_type].x),
            batch[edge_type].edge_index) for edge_type in batch.edge_types
                if edge_type[-1] == node_type)
        pooled = pooled + model.readout[node_type](h.relu(),
                                                   batch[node_type].batch)
    assert torch.allclose(out, model.lin(pooled), atol=1e-6)


class SetClassifier(torch.nn.Module):
    r"""A Deep Sets model with the :obj:`(x, edge_index, **kwargs)`
    signature that :class:`Explainer` calls; sets have no edges."""
    def __init__(self):
        super().__init__()
        self.model = DeepSetsInvariant(phi=[4, 16], rho=[16, 3], aggr='max')
        with torch.no_grad():  # only feature 0 reaches the output
            self.model.phi.lin.weight[:, 1:] = 0.0

    def forward(self, x, edge_index, batch=None):
        return self.model(x, batch)


def test_explainer_on_set_model():
    model = SetClassifier().eval()
    x, batch = torch.randn(10, 4), torch.tensor([0] * 5 + [1] * 5)
    edge_index = torch.empty(2, 0, dtype=torch.long)
    explainer = Explainer(
        model, algorithm=GNNExplainer(epochs=30), explanation_type='model',
        node_mask_type='attributes', edge_mask_type=None,
        model_config=dict(mode='multiclass_classification',
                          task_level='graph', return_type='raw'))
    explanation = explainer(x, edge_index, batch=batch, index=0)
    mask = explanation.node_mask
    assert mask.shape == (10, 4)
    # Features the model ignores and elements of the other set get nothing;
    # the explained set's used feature gets a positive weight.
    assert torch.all(mask[:, 1:] == 0)
    assert torch.all(mask[5:] == 0)
    assert mask[:5, 0].sum() > 0
    assert torch.equal(explanation.prediction, model(x, edge_index, batch))


# 2. Inside message passing ###################################################


def neighbour_sets(edge_index, num_nodes):
    return [edge_index[0, edge_index[1] == i] for i in range(num_nodes)]


@pytest.mark.parametrize('sorted_ptr', [False, True])
def test_invariant_as_aggr_of_sage_conv(sorted_ptr):
    x, edge_index, _ = small_graphs()
    edge_index = edge_index[:, torch.randperm(edge_index.size(1))]
    aggr = DeepSetsInvariant(phi=[3, 8], rho=[8, 3])
    conv = SAGEConv(3, 5, aggr=aggr)
    seen = []
    aggr.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get('ptr')),
        with_kwargs=True)
    if sorted_ptr:
        order = edge_index[1].argsort(stable=True)
        edge_index = EdgeIndex(edge_index[:, order], sparse_size=(9, 9),
                               sort_order='col')
    out = conv(x, edge_index)
    # The ptr path was taken exactly when the edges are sorted.
    assert (seen[-1] is not None) == sorted_ptr
    expected = torch.stack([
        conv.lin_l(aggr(x[nbrs])[0]) + conv.lin_r(x[i])
        for i, nbrs in enumerate(neighbour_sets(edge_index, 9))
    ])
    assert torch.allclose(out, expected, atol=1e-6)


def test_invariant_as_aggr_of_graph_conv_matches_sum_of_phi():
    x, edge_index, _ = small_graphs()
    aggr = DeepSetsInvariant(phi=[3, 8], rho=[8, 3])
    conv = GraphConv(3, 4, aggr=aggr)
    out = conv(x, edge_index)
    agg = aggr.rho(torch.zeros(9, 8).index_add_(
        0, edge_index[1], aggr.phi(x[edge_index[0]])))
    assert torch.allclose(out, conv.lin_rel(agg) + conv.lin_root(x),
                          atol=1e-6)
    # Node-level output: relabelling nodes permutes it.
    perm = torch.randperm(9)
    px, pei, _ = relabel(x, edge_index, torch.zeros(9, dtype=torch.long),
                         perm)
    assert torch.allclose(conv(px, pei), out[perm], atol=1e-6)
    out.sum().backward()
    assert aggr.phi.lin.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('sorted_ptr', [False, True])
def test_invariant_in_a_list_of_aggregations(sorted_ptr):
    x, edge_index, _ = small_graphs()
    deep_sets = DeepSetsInvariant(phi=[3, 8], rho=[8, 3], aggr='mean')
    conv = SAGEConv(3, 5, aggr=['max', deep_sets])
    assert conv.lin_l.in_channels == 6
    if sorted_ptr:
        order = edge_index[1].argsort(stable=True)
        edge_index = EdgeIndex(edge_index[:, order], sparse_size=(9, 9),
                               sort_order='col')
    out = conv(x, edge_index)
    rows = []
    for nbrs in neighbour_sets(edge_index, 9):
        rows.append(torch.cat([x[nbrs].max(0).values, deep_sets(x[nbrs])[0]]))
    expected = conv.lin_l(torch.stack(rows)) + conv.lin_r(x)
    assert torch.allclose(out, expected, atol=1e-6)


def test_equivariant_layer_inside_pyg_sequential():
    first = PermutationEquivariantLayer(3, 8, aggr='max')
    second = PermutationEquivariantLayer(8, 2, aggr='mean', tied=True)
    model = Sequential('x, batch', [
        (first, 'x, batch -> x'),
        ReLU(),
        (second, 'x, batch -> x'),
    ])
    x, _, batch = small_graphs()
    perm = torch.randperm(9)
    x, batch = x[perm], batch[perm]  # unsorted index path
    out = model(x, batch)
    assert torch.allclose(out, second(first(x, batch).relu(), batch))
    assert_permutation_equivariant(model, x, batch)

    # The sorted path: the same Sequential fed PyG's `ptr` as well.
    order = batch.argsort(stable=True)
    ptr = torch.tensor([0, 3, 7, 9])
    with_ptr = Sequential('x, batch, ptr', [
        (first, 'x, batch, ptr -> x'),
        ReLU(),
        (second, 'x, batch, ptr -> x'),
    ])
    assert torch.allclose(with_ptr(x[order], batch[order], ptr), out[order],
                          atol=1e-6)


# 3. Point-cloud datasets #####################################################


def no_download(self):
    raise AssertionError(f'{type(self).__name__} tried to download')


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp('datasets')
    roots = {}
    for name in ('10', '40'):
        roots[f'modelnet{name}'] = str(base / f'ModelNet{name}')
        write_modelnet(roots[f'modelnet{name}'], name)
    roots['shapenet'] = str(base / 'ShapeNet')
    write_shapenet(roots['shapenet'], ('Airplane', 'Mug'))
    roots['shapes'] = str(base / 'GeometricShapes')
    write_geometric_shapes(roots['shapes'], per_split=2)
    return roots


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    for cls in (ModelNet, ShapeNet, GeometricShapes):
        monkeypatch.setattr(cls, 'download', no_download)


def fit(model, dataset, target, steps, lr=1e-2):
    r"""Trains on the whole (tiny) dataset as one batch; returns the first
    and the last loss and the accuracy in eval mode afterwards."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(dataset, batch_size=len(dataset), shuffle=True)
    losses = []
    for _ in range(steps):
        batch = next(iter(loader))
        loss = F.cross_entropy(model(batch.x, batch.batch), target(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        batch = next(iter(loader))
        pred = model(batch.x, batch.batch).argmax(-1)
    return losses[0], losses[-1], float((pred == target(batch)).float().mean())


def point_cloud(num_points):
    return T.Compose([T.NormalizeScale(), T.SamplePoints(num_points),
                      ToSet()])


@pytest.mark.slow
def test_modelnet10_through_to_set_trains(roots):
    train = ModelNet(roots['modelnet10'], '10', train=True,
                     transform=point_cloud(64))
    test = ModelNet(roots['modelnet10'], '10', train=False,
                    transform=point_cloud(64))
    assert len(train) == len(test) == 10 and train.num_classes == 10
    data = train[0]
    assert data.x.shape == (64, 3) and 'face' not in data
    assert torch.equal(data.x, data.pos)
    assert data.pos.abs().max() <= 1.0  # NormalizeScale ran first
    # Labels follow PyG's sorted class folders.
    assert sorted(int(d.y) for d in train) == list(range(10))
    first, last, acc = fit(DeepSetsPointCloud(3, 10, 32, dropout=0.0), train,
                           lambda b: b.y, steps=25)
    assert last < 0.5 * first and acc >= 0.8


@pytest.mark.slow
def test_modelnet40_through_to_set_with_normals(roots):
    transform = T.Compose([T.NormalizeScale(),
                           T.SamplePoints(32, include_normals=True),
                           ToSet(normal=True)])
    dataset = ModelNet(roots['modelnet40'], '40', train=True,
                       transform=transform)
    assert len(dataset) == 40 and dataset.num_classes == 40
    assert sorted(int(d.y) for d in dataset) == list(range(40))
    data = dataset[0]
    assert data.x.shape == (32, 6)
    assert torch.allclose(data.x[:, 3:].norm(dim=-1), torch.ones(32))
    first, last, acc = fit(DeepSetsPointCloud(6, 40, 32, dropout=0.0),
                           dataset, lambda b: b.y, steps=25)
    assert last < 0.7 * first and acc >= 0.2  # chance: 0.025


@pytest.mark.slow
def test_geometric_shapes_through_to_set_trains(roots):
    dataset = GeometricShapes(roots['shapes'], train=True,
                              transform=point_cloud(64))
    assert len(dataset) == 6 and dataset.num_classes == 3
    assert dataset[0].x.shape == (64, 3)
    first, last, acc = fit(DeepSetsPointCloud(3, 3, 32, dropout=0.0),
                           dataset, lambda b: b.y, steps=20)
    assert last < 0.5 * first and acc == 1.0


@pytest.mark.slow
def test_shapenet_through_to_set_classification_and_parts(roots):
    dataset = ShapeNet(roots['shapenet'], ['Airplane', 'Mug'],
                       split='trainval', transform=ToSet(features=True))
    assert len(dataset) == 8
    data = dataset[0]
    # x = [pos || normals], normals coming from ShapeNet's own `x`.
    assert data.x.shape == (64, 6)
    assert torch.equal(data.x[:, :3], data.pos)
    assert torch.allclose(data.x[:, 3:].norm(dim=-1), torch.ones(64))
    # One label per cloud (category) and one per point (part).
    first, last, acc = fit(DeepSetsPointCloud(6, 2, 32, dropout=0.0),
                           dataset, lambda b: b.category, steps=15)
    assert last < 0.5 * first and acc == 1.0
    # Part segmentation: the equivariant model gives one row per point.
    first, last, acc = fit(DeepSetsEquivariant([6, 32, 32, 50], aggr='max'),
                           dataset, lambda b: b.y, steps=40)
    assert last < 0.3 * first and acc >= 0.7


class LazyHeteroReadout(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = SAGEConv((-1, -1), 8)
        self.readout = DeepSetsInvariant(phi=[-1, 16], rho=[-1, 8])
        self.lin = torch.nn.Linear(8, 2)

    def forward(self, x, edge_index, batch):
        x = self.conv(x, edge_index).relu()
        return self.lin(self.readout(x, batch))



def test_lazy_model_under_to_hetero():
    generator = torch.Generator().manual_seed(0)
    batch = Batch.from_data_list([molecule(4, 2, generator),
                                  molecule(3, 3, generator)])
    model = to_hetero(LazyHeteroReadout(), batch.metadata(), aggr='sum')
    out = model(batch.x_dict, batch.edge_index_dict, batch.batch_dict)
    assert out.shape == (2, 2)
    assert model.readout['atom'].phi.lin.weight.shape == (16, 8)
    out.sum().backward()
    assert model.readout['bond'].phi.lin.weight.grad is not None



def test_list_of_aggregations_in_sage_conv_needs_the_input_width():
    # PyG sizes a concatenating list as len(aggrs) x in_channels, so every
    # aggregation must keep the width: rho's output = in_channels works.
    x = torch.randn(6, 4)
    edge_index = torch.tensor([[1, 2, 3, 4, 0, 5], [0, 0, 1, 1, 2, 3]])
    deep_sets = DeepSetsInvariant(phi=[4, 32], rho=[32, 4])
    conv = SAGEConv(4, 16, aggr=['max', deep_sets])
    out = conv(x, edge_index)
    assert out.shape == (6, 16)
    messages = x[edge_index[0]]
    pooled = torch.cat([scatter(messages, edge_index[1], 0, 6, 'max'),
                        deep_sets(messages, edge_index[1], dim_size=6)], -1)
    assert torch.allclose(out, conv.lin_l(pooled) + conv.lin_r(x),
                          atol=1e-6)
    # Another width fails inside PyG's linear layer.
    wide = SAGEConv(4, 16, aggr=['max', DeepSetsInvariant([4, 32], [32, 8])])
    with pytest.raises(RuntimeError, match='shapes cannot be multiplied'):
        wide(x, edge_index)
