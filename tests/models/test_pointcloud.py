import pytest
import torch
from torch import nn

from torch_geometric.utils import scatter
from torch_geometric_deepsets import (
    DeepSetsEquivariant,
    DeepSetsPointCloud,
    from_dense,
)
from torch_geometric_deepsets.testing import assert_permutation_invariant


# The authors' PointClouds/classifier.py, for exact equivalence.
class PermEqui1_max(nn.Module):
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.Gamma = nn.Linear(in_dim, out_dim)

    def forward(self, x):
        xm, _ = x.max(1, keepdim=True)
        return self.Gamma(x - xm)


class PermEqui2_max(nn.Module):
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.Gamma = nn.Linear(in_dim, out_dim)
        self.Lambda = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x):
        xm, _ = x.max(1, keepdim=True)
        return self.Gamma(x) - self.Lambda(xm)


class D(nn.Module):
    def __init__(self, d_dim, x_dim, num_classes, layer):
        super().__init__()
        self.phi = nn.Sequential(layer(x_dim, d_dim), nn.Tanh(),
                                 layer(d_dim, d_dim), nn.Tanh(),
                                 layer(d_dim, d_dim), nn.Tanh())
        self.ro = nn.Sequential(nn.Dropout(p=0.5), nn.Linear(d_dim, d_dim),
                                nn.Tanh(), nn.Dropout(p=0.5),
                                nn.Linear(d_dim, num_classes))

    def forward(self, x):
        phi_output = self.phi(x)
        sum_output, _ = phi_output.max(1)
        return self.ro(sum_output)


def copy_into_reference(model, ref):
    with torch.no_grad():
        for layer, ref_layer in zip(model.encoder.layers, ref.phi[::2]):
            ref_layer.Gamma.weight.copy_(layer.lin.weight)
            ref_layer.Gamma.bias.copy_(layer.lin.bias)
            if layer.lin_pool is not None:
                ref_layer.Lambda.weight.copy_(layer.lin_pool.weight)
        for i in (1, 4):
            ref.ro[i].load_state_dict(model.head[i].state_dict())


def test_repr_and_paper_architecture():
    model = DeepSetsPointCloud()
    assert str(model) == ('DeepSetsPointCloud(3, 40, hidden_channels=256, '
                          'num_layers=3)')
    assert isinstance(model.encoder, DeepSetsEquivariant)
    assert str(model.encoder) == (
        'DeepSetsEquivariant([3, 256, 256, 256], aggr=MaxAggregation(), '
        'tied=True, readout=MaxAggregation(), act=Tanh(), plain_last=False)')
    assert not model.encoder.plain_last
    assert isinstance(model.encoder.act, nn.Tanh)
    assert [type(m) for m in model.head] == [
        nn.Dropout, nn.Linear, nn.Tanh, nn.Dropout, nn.Linear
    ]
    assert model.head[0].p == model.head[3].p == 0.5
    assert model.head[4].out_features == 40
    ref = D(256, 3, 40, PermEqui1_max)
    assert sum(p.numel() for p in model.parameters()) == \
        sum(p.numel() for p in ref.parameters())
    assert str(DeepSetsPointCloud(6, 10, hidden_channels=512)) == \
        'DeepSetsPointCloud(6, 10, hidden_channels=512, num_layers=3)'


@pytest.mark.parametrize('tied,layer', [(True, PermEqui1_max),
                                        (False, PermEqui2_max)])
def test_equals_authors_reference_model(tied, layer):
    model = DeepSetsPointCloud(3, 40, hidden_channels=32, tied=tied).eval()
    ref = D(32, 3, 40, layer).eval()
    copy_into_reference(model, ref)
    dense = torch.randn(4, 50, 3)  # 4 clouds of 50 points, as the authors
    x, batch, _ = from_dense(dense)
    expected = ref(dense)
    assert torch.allclose(model(x, batch), expected, atol=1e-5)
    ptr = torch.tensor([0, 50, 100, 150, 200])
    assert torch.allclose(model(x, ptr=ptr), expected, atol=1e-5)


def test_clouds_of_different_sizes_are_independent():
    model = DeepSetsPointCloud(3, 5, hidden_channels=16).eval()
    sizes = [7, 1, 12]
    clouds = [torch.randn(n, 3) for n in sizes]
    x = torch.cat(clouds)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    out = model(x, batch)
    assert out.shape == (3, 5)
    for i, cloud in enumerate(clouds):
        assert torch.allclose(out[i], model(cloud)[0], atol=1e-6)
    perm = torch.randperm(x.size(0))
    assert torch.allclose(model(x[perm], batch[perm]), out, atol=1e-6)
    assert_permutation_invariant(model, x, batch)


def test_dropout_only_in_training():
    model = DeepSetsPointCloud(3, 5, hidden_channels=16)
    x, batch = torch.randn(20, 3), torch.tensor([0] * 10 + [1] * 10)
    model.train()
    assert not torch.allclose(model(x, batch), model(x, batch))
    model.eval()
    assert torch.equal(model(x, batch), model(x, batch))
    no_dropout = DeepSetsPointCloud(3, 5, hidden_channels=16, dropout=0.0)
    assert torch.equal(no_dropout(x, batch), no_dropout(x, batch))


def test_every_parameter_gets_a_gradient_and_reset_changes_them():
    model = DeepSetsPointCloud(3, 5, hidden_channels=16, tied=False)
    x, batch = torch.randn(20, 3), torch.tensor([0] * 10 + [1] * 10)
    model(x, batch).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    before = [p.detach().clone() for p in model.parameters()]
    model.reset_parameters()
    assert all(not torch.equal(a, b)
               for a, b in zip(before, model.parameters()))


def test_concatenating_readout_widens_the_head():
    model = DeepSetsPointCloud(3, 5, hidden_channels=16,
                               readout=['max', 'mean']).eval()
    assert model.head[1].in_features == 32
    x, batch = torch.randn(6, 3), torch.tensor([0, 0, 0, 1, 1, 1])
    h = x
    for layer in model.encoder.layers:
        h = torch.tanh(layer(h, batch))
    pooled = torch.cat([scatter(h, batch, 0, 2, 'max'),
                        scatter(h, batch, 0, 2, 'mean')], dim=-1)
    assert torch.allclose(model(x, batch), model.head(pooled), atol=1e-6)


def test_elu_variant():
    model = DeepSetsPointCloud(act='elu', hidden_channels=8)
    assert isinstance(model.encoder.act, nn.ELU)
    assert isinstance(model.head[2], nn.ELU)


@pytest.mark.parametrize('kwargs,match', [
    (dict(num_classes=0), "'num_classes' must be a positive int"),
    (dict(in_channels=0), "'in_channels' must be a positive int, or -1"),
    (dict(hidden_channels=0), "'hidden_channels' must be a positive int"),
    (dict(num_layers=0), "'num_layers' must be a positive int"),
    (dict(dropout=1.0), r"'dropout' must lie in \[0, 1\)"),
    (dict(readout=None), "'readout' must be given"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeepSetsPointCloud(**kwargs)


def test_wrong_input_width_names_sizes():
    model = DeepSetsPointCloud(in_channels=6, hidden_channels=8)
    with pytest.raises(ValueError, match='3 features per element but the '
                       'model expects 6'):
        model(torch.randn(4, 3))
