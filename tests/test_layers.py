
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import AGGRS, make_batch
from tests.strategies import set_sizes
from torch_geometric.utils import scatter
from torch_geometric_deepsets import PermutationEquivariantLayer, from_dense
from torch_geometric_deepsets.testing import assert_permutation_equivariant


class PermEqui1(torch.nn.Module):
    r"""The authors' tied layer (eq. 23): Gamma(x - pool(x))."""
    def __init__(self, d_in, d_out, reduce):
        super().__init__()
        self.Gamma = torch.nn.Linear(d_in, d_out)
        self.reduce = reduce

    def forward(self, x):  # x: [B, M, D]
        return self.Gamma(x - self.reduce(x))


class PermEqui2(torch.nn.Module):
    r"""The authors' untied layer (eq. 22): Gamma(x) - Lambda(pool(x))."""
    def __init__(self, d_in, d_out, reduce):
        super().__init__()
        self.Gamma = torch.nn.Linear(d_in, d_out)
        self.Lambda = torch.nn.Linear(d_in, d_out, bias=False)
        self.reduce = reduce

    def forward(self, x):
        return self.Gamma(x) - self.Lambda(self.reduce(x))


REDUCE = {
    'max': lambda x: x.max(1, keepdim=True).values,
    'mean': lambda x: x.mean(1, keepdim=True),
    'sum': lambda x: x.sum(1, keepdim=True),
}


def test_hand_computed_untied_and_tied(toy):
    x, index, ptr = toy
    layer = PermutationEquivariantLayer(2, 1, aggr='sum')
    with torch.no_grad():
        layer.lin.weight.copy_(torch.tensor([[1.0, 2.0]]))
        layer.lin.bias.fill_(0.5)
        layer.lin_pool.weight.copy_(torch.tensor([[0.1, -1.0]]))
    # Set sums: [4, -1.5], [1, 3], [5, 1]; pool·Γ = 1.9, -2.9, -0.5.
    expected = torch.tensor([[-3.0 + 0.5 - 1.9], [4.0 + 0.5 - 1.9],
                             [7.0 + 0.5 + 2.9], [6.0 + 0.5 + 2.9],
                             [-6.0 + 0.5 + 2.9], [7.0 + 0.5 + 0.5]])
    assert torch.allclose(layer(x, index), expected)
    assert torch.allclose(layer(x, ptr=ptr), expected)

    tied = PermutationEquivariantLayer(2, 1, aggr='mean', tied=True)
    assert tied.lin_pool is None
    with torch.no_grad():
        tied.lin.weight.copy_(torch.tensor([[1.0, 2.0]]))
        tied.lin.bias.fill_(0.5)
    # (x - mean) Λ + b; set means [2, -0.75], [1/3, 1], [5, 1].
    means = torch.tensor([[2.0, -0.75], [2.0, -0.75], [1 / 3, 1.0],
                          [1 / 3, 1.0], [1 / 3, 1.0], [5.0, 1.0]])
    expected = (x - means) @ torch.tensor([[1.0], [2.0]]) + 0.5
    assert torch.allclose(tied(x, index), expected, atol=1e-6)
    assert torch.allclose(tied(x[5:]), torch.tensor([[0.5]]))


@pytest.mark.parametrize('aggr', ['max', 'mean'])
@pytest.mark.parametrize('tied', [False, True])
def test_equals_authors_reference_layers(aggr, tied):
    # Same weights, float64: equal up to the order of the floating-point
    # operations (the layer multiplies the B pooled rows, not N).
    dense = torch.randn(4, 7, 3, dtype=torch.float64)
    ref = (PermEqui1 if tied else PermEqui2)(3, 5, REDUCE[aggr]).double()
    layer = PermutationEquivariantLayer(3, 5, aggr=aggr, tied=tied).double()
    layer.lin.load_state_dict(ref.Gamma.state_dict())
    if not tied:
        layer.lin_pool.load_state_dict(ref.Lambda.state_dict())
    x, batch, _ = from_dense(dense)
    out = layer(x, batch)
    assert torch.allclose(out.view(4, 7, 5), ref(dense), rtol=0, atol=1e-12)


@given(sizes=set_sizes, aggr=st.sampled_from(AGGRS), tied=st.booleans(),
       seed=st.integers(0, 999))
def test_equivariance_property(sizes, aggr, tied, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, batch = make_batch(sizes, 3, generator=gen)
    layer = PermutationEquivariantLayer(3, 4, aggr=aggr, tied=tied)
    assert_permutation_equivariant(layer, x, batch, dim_size=len(sizes),
                                   generator=gen)
    # Each set's output does not depend on the other sets.
    out = layer(x, batch, dim_size=len(sizes))
    for s in range(len(sizes)):
        assert torch.allclose(out[batch == s], layer(x[batch == s]),
                              atol=1e-5)


@pytest.mark.parametrize('aggr', AGGRS)
def test_index_equals_ptr_and_gradients(aggr):
    x, batch = make_batch([3, 0, 1, 4], 3)
    x.requires_grad_()
    layer = PermutationEquivariantLayer(3, 2, aggr=aggr)
    ptr = torch.tensor([0, 3, 3, 4, 8])
    out = layer(x, batch, dim_size=4)
    assert torch.allclose(out, layer(x, ptr=ptr), atol=1e-6)
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert layer.lin.weight.grad is not None
    assert layer.lin_pool.weight.grad.abs().sum() > 0


def test_multi_aggregation_and_kwargs():
    layer = PermutationEquivariantLayer(3, 2, aggr=['sum', 'max'])
    assert layer.lin_pool.in_channels == 6
    x, batch = make_batch([2, 3], 3)
    pooled = torch.cat([scatter(x, batch, 0, 2, 'sum'),
                        scatter(x, batch, 0, 2, 'max')], dim=-1)
    expected = layer.lin(x) - layer.lin_pool(pooled)[batch]
    assert torch.allclose(layer(x, batch), expected, atol=1e-6)
    soft = PermutationEquivariantLayer(3, 2, aggr='softmax',
                                       aggr_kwargs={'learn': True})
    assert soft.aggr_module.learn
    pooled = soft.aggr_module(x, batch, dim_size=2)
    expected = soft.lin(x) - soft.lin_pool(pooled)[batch]
    assert torch.allclose(soft(x, batch), expected, atol=1e-6)
    assert_permutation_equivariant(soft, x, batch)
    with pytest.raises(ValueError, match=r'tied=True .* width 3 \(got 6'):
        PermutationEquivariantLayer(3, 2, aggr=['sum', 'max'], tied=True)


@pytest.mark.parametrize('aggr', AGGRS)
@pytest.mark.parametrize('tied', [False, True])
def test_leading_dimensions(aggr, tied):
    # [*, N, F] along dim=-2, and [N, heads, F] along dim=0: each slice of
    # the extra dimension is a batch of sets of its own.
    layer = PermutationEquivariantLayer(3, 4, aggr=aggr, tied=tied)
    x = torch.randn(2, 6, 3)
    index = torch.tensor([0, 0, 1, 1, 1, 2])
    out = layer(x, index)
    assert out.shape == (2, 6, 4)
    for i in range(2):
        assert torch.allclose(out[i], layer(x[i], index), atol=1e-6)
    heads = layer(x.transpose(0, 1), index, dim=0)
    assert torch.allclose(heads, out.transpose(0, 1), atol=1e-6)
    ptr = torch.tensor([0, 2, 5, 6])
    assert torch.allclose(layer(x, ptr=ptr), out, atol=1e-6)


def test_repr():
    layer = PermutationEquivariantLayer(3, 5, aggr='max')
    assert str(layer) == ('PermutationEquivariantLayer(3, 5, '
                          'aggr=MaxAggregation(), tied=False)')
    tied = PermutationEquivariantLayer(3, 5, aggr='mean', tied=True,
                                       bias=False)
    assert str(tied) == ('PermutationEquivariantLayer(3, 5, '
                         'aggr=MeanAggregation(), tied=True)')
    assert tied.lin.bias is None


def test_bad_input():
    with pytest.raises(ValueError, match="'in_channels' must be a positive"):
        PermutationEquivariantLayer(0, 3)
    with pytest.raises(ValueError, match="Unknown 'aggr'"):
        PermutationEquivariantLayer(3, 3, aggr='median2')
    layer = PermutationEquivariantLayer(3, 4)
    with pytest.raises(ValueError, match="'x' has 2 features per element but "
                       "the model expects 3"):
        layer(torch.randn(4, 2))
    with pytest.raises(ValueError, match="'x' must have a feature dimension"):
        layer(torch.randn(4))
    with pytest.raises(ValueError, match="'dim' is 1 but 'x' has shape"):
        layer(torch.randn(4, 3), dim=1)
    with pytest.raises(ValueError,
                       match="'batch' has 3 entries but 'x' has 4"):
        layer(torch.randn(4, 3), torch.tensor([0, 0, 1]))
    with pytest.raises(TypeError, match="'batch' must be an integer tensor"):
        layer(torch.randn(4, 3), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="'ptr' must start at 0 and end"):
        layer(torch.randn(4, 3), ptr=torch.tensor([0, 2, 3]))


@pytest.mark.parametrize('aggr', ['sum', 'mean', 'max'])
@pytest.mark.parametrize('tied', [False, True])
@pytest.mark.parametrize('bias', [False, True])
def test_matches_plain_formula_with_gradients(aggr, tied, bias):
    # The layer adds x Λ in place into the gathered set rows b - p Γ; this
    # checks that against eq. 22 / 23 written with plain tensor operations,
    # for the output and every gradient, with an empty set.
    torch.manual_seed(0)
    layer = PermutationEquivariantLayer(3, 4, aggr=aggr, tied=tied,
                                        bias=bias).double()
    x, batch = make_batch([3, 0, 1, 5], 3, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = layer(x1, batch, dim_size=4)

    weights = [p.detach().clone().requires_grad_()
               for p in layer.parameters()]
    lam = weights[0]
    gamma = lam if tied else weights[-1]
    pooled = scatter(x2, batch, 0, 4, aggr)
    expected = x2 @ lam.t() - (pooled @ gamma.t())[batch]
    if bias:
        expected = expected + weights[1]
    assert torch.allclose(out, expected, atol=1e-12)

    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-12)
    for p, ref in zip(layer.parameters(), weights):
        assert torch.allclose(p.grad, ref.grad, atol=1e-12)
