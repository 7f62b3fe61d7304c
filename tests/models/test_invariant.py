
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import AGGRS, make_batch, pooled_by_hand
from tests.strategies import set_sizes
from torch_geometric.nn import SAGEConv
from torch_geometric.nn.aggr import (
    MultiAggregation,
)
from torch_geometric_deepsets import DeepSetsInvariant, pool
from torch_geometric_deepsets.testing import assert_permutation_invariant


@pytest.mark.parametrize('aggr', AGGRS)
def test_theorem2_decomposition(aggr):
    model = DeepSetsInvariant([3, 16, 8], [8, 16, 2], aggr=aggr)
    x, batch = make_batch([4, 0, 1, 6], 3, shuffle=True)
    out = model(x, batch, dim_size=4)
    assert out.shape == (4, 2)
    assert torch.allclose(out, pooled_by_hand(model, x, batch, 4, aggr),
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
