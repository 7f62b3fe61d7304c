
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import AGGRS, make_batch, ptr_of
from tests.strategies import set_sizes
from torch_geometric.nn import MLP, SAGEConv
from torch_geometric.nn.aggr import (
    MaxAggregation,
    MeanAggregation,
    MultiAggregation,
    SoftmaxAggregation,
    SumAggregation,
)
from torch_geometric.nn.dense.linear import Linear as PygLinear
from torch_geometric.utils import scatter
from torch_geometric_deepsets import DeepSetsInvariant, pool
from torch_geometric_deepsets.models.mlp import SplitMLP
from torch_geometric_deepsets.models.phi_pool import fused_reduce
from torch_geometric_deepsets.testing import assert_permutation_invariant


def reference(model, x, batch, num_sets, reduce):
    r"""Theorem 2 by hand: rho(pool_s phi(x)), set by set, in a loop."""
    h = model.phi(x)
    rows = []
    for s in range(num_sets):
        hs = h[batch == s]
        if hs.size(0) == 0:
            rows.append(torch.zeros(h.size(1)))
        elif reduce == 'sum':
            rows.append(hs.sum(0))
        elif reduce == 'mean':
            rows.append(hs.mean(0))
        else:
            rows.append(hs.max(0).values)
    return model.rho(torch.stack(rows))


@pytest.mark.parametrize('aggr', AGGRS)
def test_theorem2_decomposition(aggr):
    model = DeepSetsInvariant([3, 16, 8], [8, 16, 2], aggr=aggr)
    x, batch = make_batch([4, 0, 1, 6], 3, shuffle=True)
    out = model(x, batch, dim_size=4)
    assert out.shape == (4, 2)
    assert torch.allclose(out, reference(model, x, batch, 4, aggr),
                          atol=1e-5)
    # The empty set's output is rho(0).
    assert torch.allclose(out[1], model.rho(torch.zeros(1, 8))[0], atol=1e-6)


def test_hand_computed_sum_model(toy):
    x, index, _ = toy
    phi = torch.nn.Linear(2, 1)
    rho = torch.nn.Linear(1, 1)
    with torch.no_grad():
        phi.weight.copy_(torch.tensor([[1.0, 1.0]]))
        phi.bias.fill_(1.0)
        rho.weight.fill_(2.0)
        rho.bias.fill_(-1.0)
    model = DeepSetsInvariant(phi, rho)
    # Set sums of (x1 + x2 + 1): 4.5, 7.0, 7.0 -> times 2 minus 1.
    assert torch.allclose(model(x, index), torch.tensor([[8.0], [13.0],
                                                         [13.0]]))


@pytest.mark.parametrize('aggr', ['sum', 'mean'])
@pytest.mark.parametrize('layout', ['index', 'ptr'])
def test_fused_path_equals_unfused(aggr, layout, kernel_path):
    model = DeepSetsInvariant([3, 32, 32, 16], [16, 8, 1], aggr=aggr,
                              dropout=0.2)
    assert fused_reduce(model.phi, model.aggr_module) == aggr
    x, batch = make_batch([5, 0, 1, 30, 2], 3, dtype=torch.float64)
    kwargs = dict(index=batch, dim_size=5) if layout == 'index' else dict(
        ptr=ptr_of(batch, 5))
    model = model.double().eval()
    fused = model(x, **kwargs)
    assert torch.allclose(fused, reference(model, x, batch, 5, aggr),
                          atol=1e-12)
    # Gradients agree too (the bias gets n_s, or [n_s > 0] for the mean).
    model(x, **kwargs).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    reference(model, x, batch, 5, aggr).sum().backward()
    for a, p in zip(grads, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-10)


def test_pooling_moves_in_front_of_an_affine_last_layer_only():
    lin = torch.nn.Linear(8, 4)
    assert fused_reduce(SplitMLP([3, 8, 4]), SumAggregation()) == 'sum'
    assert fused_reduce(SplitMLP([3, 4]), MeanAggregation()) == 'mean'
    assert fused_reduce(SplitMLP([3, 4]), MaxAggregation()) is None
    assert fused_reduce(SplitMLP([3, 4]), SoftmaxAggregation()) is None
    # The usual shape of mask-based code moved over.
    seq = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), lin)
    assert fused_reduce(seq, SumAggregation()) == 'sum'
    seq = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(),
                              PygLinear(8, 4))
    assert fused_reduce(seq, SumAggregation()) == 'sum'
    # Not when something follows the last linear layer (e.g. dropout, whose
    # rewrite would not be exact in training), for a subclass whose forward
    # may do more, for a PyG MLP instance (used whole), or a lazy layer.
    seq = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.5))
    assert fused_reduce(seq, SumAggregation()) is None

    class Scaled(torch.nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    assert fused_reduce(torch.nn.Sequential(Scaled(3, 4)),
                        SumAggregation()) is None
    assert fused_reduce(MLP([3, 8, 4]), SumAggregation()) is None
    assert fused_reduce(torch.nn.Sequential(PygLinear(-1, 4)),
                        SumAggregation()) is None


@pytest.mark.parametrize('aggr', ['sum', 'mean'])
def test_user_sequential_phi_is_fused_exactly(aggr):
    phi = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(),
                              torch.nn.Linear(16, 8)).double()
    model = DeepSetsInvariant(phi, [8, 2], aggr=aggr).double()
    x, batch = make_batch([4, 0, 7, 1], 3, dtype=torch.float64)
    out = model(x, batch, dim_size=4)
    assert torch.allclose(out, reference(model, x, batch, 4, aggr),
                          atol=1e-12)


def test_dropout_after_the_last_layer_keeps_the_unfused_path():
    # With dropout behind phi's last layer the rewrite would not be exact
    # while training: the model must pool phi's full output.
    phi = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 8), torch.nn.Dropout(0.5))
    model = DeepSetsInvariant(phi, [8, 2]).train()
    x, batch = make_batch([4, 5], 3)
    torch.manual_seed(1)
    out = model(x, batch)
    torch.manual_seed(1)
    expected = model.rho(scatter(phi(x), batch, 0, 2, 'sum'))
    assert torch.equal(out, expected)


@given(sizes=set_sizes, aggr=st.sampled_from(AGGRS), seed=st.integers(0, 999))
def test_invariance_property(sizes, aggr, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, batch = make_batch(sizes, 3, generator=gen)
    model = DeepSetsInvariant([3, 8, 8], [8, 8, 2], aggr=aggr)
    assert_permutation_invariant(model, x, batch, dim_size=len(sizes),
                                 generator=gen)
    out = model(x, batch, dim_size=len(sizes))
    for s in range(len(sizes)):  # independent of the other sets
        assert torch.allclose(out[s:s + 1], model(x[batch == s]), atol=1e-5)


@pytest.mark.parametrize('aggr', AGGRS)
def test_index_equals_ptr_and_gradients(aggr):
    model = DeepSetsInvariant([3, 8, 8], [8, 4], aggr=aggr)
    x, batch = make_batch([3, 0, 2, 1], 3)
    x.requires_grad_()
    out = model(x, batch, dim_size=4)
    assert torch.allclose(out, model(x, ptr=torch.tensor([0, 3, 3, 5, 6])),
                          atol=1e-6)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_single_set_and_empty_input():
    model = DeepSetsInvariant([3, 8], [8, 2])
    x = torch.randn(5, 3)
    assert torch.allclose(model(x), model(x, torch.zeros(5, dtype=torch.long)))
    empty = model(x[:0])
    assert empty.shape == (1, 2)
    assert torch.allclose(empty, model.rho(torch.zeros(1, 8)))


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


def test_as_aggr_in_sage_conv():
    aggr = DeepSetsInvariant([4, 8, 8], [8, 4])
    conv = SAGEConv(4, 6, aggr=aggr)
    x = torch.randn(5, 4)
    edge_index = torch.tensor([[1, 2, 3, 4, 0, 4], [0, 0, 1, 1, 2, 3]])
    out = conv(x, edge_index)
    assert out.shape == (5, 6)
    # Node 4 has no incoming edges: its aggregate is rho(0).
    messages = aggr(x[edge_index[0]], edge_index[1], dim_size=5)
    expected = conv.lin_l(messages) + conv.lin_r(x)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(messages[4], aggr.rho(torch.zeros(1, 8))[0],
                          atol=1e-6)


def test_repr():
    model = DeepSetsInvariant([3, 8], [8, 2], aggr='max')
    assert str(model) == ('DeepSetsInvariant(phi=SplitMLP(3, 8), '
                          'rho=MLP(8, 2), aggr=MaxAggregation())')


@pytest.mark.parametrize('aggr', AGGRS + ['softmax'])
def test_leading_dimensions(aggr):
    # PyG's Aggregation contract: [*, N, F] along dim=-2, or elements along
    # dim=0 with heads in between (GATConv's messages).
    model = DeepSetsInvariant([3, 8, 8], [8, 2], aggr=aggr)
    x = torch.randn(2, 6, 3)
    index = torch.tensor([0, 0, 1, 1, 1, 2])
    out = model(x, index)
    assert out.shape == (2, 3, 2)
    for i in range(2):
        assert torch.allclose(out[i], model(x[i], index), atol=1e-6)
    assert torch.allclose(model(x, ptr=torch.tensor([0, 2, 5, 6])), out,
                          atol=1e-6)
    heads = model(x.transpose(0, 1), index, dim=0)
    assert heads.shape == (3, 2, 2)
    assert torch.allclose(heads, out.transpose(0, 1), atol=1e-6)


@pytest.mark.parametrize('aggr', AGGRS)
def test_nested_in_a_list_gives_what_it_gives_alone(aggr):
    inner = DeepSetsInvariant([3, 8], [8, 2], aggr=aggr)
    multi = MultiAggregation(['max', inner])
    x, batch = make_batch([2, 0, 3], 3)
    out = multi(x, batch, dim_size=3)
    alone = inner(x, batch, dim_size=3)
    assert torch.equal(out[:, 3:], alone)
    # The empty set gives rho(pool of nothing), nested or not.
    assert torch.allclose(alone[1], inner.rho(torch.zeros(1, 8))[0])
    assert torch.equal(pool(x, batch, dim_size=3, aggr=multi), out)


def test_bad_input():
    with pytest.raises(ValueError, match="'rho' takes 4 input channels but "
                       "'phi' pooled with SumAggregation\\(\\) gives 8"):
        DeepSetsInvariant([3, 8], [4, 2])
    with pytest.raises(ValueError, match="'phi' as a channel list"):
        DeepSetsInvariant([3], [3, 2])
    with pytest.raises(TypeError, match="'rho' must be a list of channels"):
        DeepSetsInvariant([3, 8], 'mlp')
    with pytest.raises(ValueError, match="Unknown 'aggr' 'summ'"):
        DeepSetsInvariant([3, 8], [8, 2], aggr='summ')
    model = DeepSetsInvariant([3, 8], [8, 2])
    with pytest.raises(ValueError, match="'x' has 5 features per element but "
                       "the model expects 3"):
        model(torch.randn(4, 5))
    with pytest.raises(ValueError,
                       match="'index' has 3 entries but 'x' has 4"):
        model(torch.randn(4, 3), torch.tensor([0, 0, 1]))
    with pytest.raises(TypeError, match="'index' must be an integer tensor"):
        model(torch.randn(4, 3), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError,
                       match=r"ids in \[0, 2\] but 'dim_size' is 2"):
        model(torch.randn(4, 3), torch.tensor([0, 0, 1, 2]), dim_size=2)
    with pytest.raises(ValueError, match="'dim' is 1 but 'x' has shape"):
        model(torch.randn(4, 3), dim=1)
