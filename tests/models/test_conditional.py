
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import AGGRS, make_batch
from tests.strategies import set_sizes
from torch_geometric.utils import scatter
from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsConditionalEquivariant,
)
from torch_geometric_deepsets.testing import assert_permutation_invariant

FUSIONS = ['concat', 'film', 'add']


def reference(model, x, z, batch, num_sets):
    r"""f(X | z) set by set, following the docstring's formulas."""
    rows = []
    for s in range(num_sets):
        xs, zs = x[batch == s], z[s:s + 1].expand(int((batch == s).sum()), -1)
        if model.fusion == 'concat':
            h = model.phi(torch.cat([xs, zs], dim=-1))
        elif model.fusion == 'add':
            h = model.phi(xs + model.context_fusion.lin(zs))
        else:
            # phi's first layer (linear + activation), FiLM, the rest.
            first = xs
            if model.phi_first is not None:
                lin = model.phi_first.lins[0]
                first = torch.relu(lin(xs))
            gamma, beta = model.context_fusion.lin(zs).chunk(2, dim=-1)
            h = model.phi(first * (1 + gamma) + beta)
        reduce = type(model.aggr_module).__name__
        if h.size(0) == 0:
            p = torch.zeros(h.size(1))
        elif reduce.startswith('Sum'):
            p = h.sum(0)
        elif reduce.startswith('Mean'):
            p = h.mean(0)
        else:
            p = h.max(0).values
        rows.append(torch.cat([p, z[s]]) if model.context_in_rho else p)
    return model.rho(torch.stack(rows))


@pytest.mark.parametrize('fusion', FUSIONS)
@pytest.mark.parametrize('aggr', AGGRS)
def test_formula(fusion, aggr):
    model = DeepSetsConditional([3, 8, 8], [8, 8, 2], context_channels=4,
                                fusion=fusion, aggr=aggr)
    x, batch = make_batch([3, 0, 1, 5], 3, shuffle=True)
    z = torch.randn(4, 4)
    out = model(x, z, batch)
    assert out.shape == (4, 2)
    assert torch.equal(out, model(x, z, batch, dim_size=4))
    assert torch.allclose(out, reference(model, x, z, batch, 4), atol=1e-5)


@pytest.mark.parametrize('fusion', FUSIONS)
def test_index_equals_ptr(fusion):
    model = DeepSetsConditional([3, 8, 8], [8, 2], context_channels=4,
                                fusion=fusion)
    x, batch = make_batch([3, 0, 1, 5], 3)
    z = torch.randn(4, 4)
    assert torch.allclose(model(x, z, batch),
                          model(x, z, ptr=torch.tensor([0, 3, 3, 4, 9])),
                          atol=1e-6)


def test_context_changes_output_and_rho_without_context():
    model = DeepSetsConditional([3, 8], [8, 2], context_channels=2,
                                context_in_rho=False)
    assert model.rho.in_channels == 8
    x, batch = make_batch([3, 3], 3)
    z = torch.randn(2, 2)
    out = model(x, z, batch)
    assert not torch.allclose(out, model(x, z + 1.0, batch))
    assert torch.allclose(out, reference(model, x, z, batch, 2), atol=1e-6)


@given(sizes=set_sizes, aggr=st.sampled_from(AGGRS),
       fusion=st.sampled_from(FUSIONS), seed=st.integers(0, 999))
def test_invariance_property(sizes, aggr, fusion, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, batch = make_batch(sizes, 3, generator=gen)
    z = torch.randn(len(sizes), 2, generator=gen)
    model = DeepSetsConditional([3, 8, 8], [8, 2], context_channels=2,
                                fusion=fusion, aggr=aggr)
    assert_permutation_invariant(model, x, batch, set_inputs={'context': z},
                                 generator=gen)
    out = model(x, z, batch, dim_size=len(sizes))
    for s in range(len(sizes)):
        assert torch.allclose(out[s:s + 1], model(x[batch == s], z[s:s + 1]),
                              atol=1e-5)


def test_gradients_reach_context_and_elements():
    model = DeepSetsConditional([3, 8, 8], [8, 2], context_channels=2,
                                fusion='film', aggr='max')
    x, batch = make_batch([2, 0, 3], 3)
    z = torch.randn(3, 2, requires_grad=True)
    x.requires_grad_()
    model(x, z, batch).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_custom_modules():
    phi = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU())
    rho = torch.nn.Linear(10, 1)
    model = DeepSetsConditional(phi, rho, context_channels=2)
    x, batch = make_batch([2, 3], 3)
    z = torch.randn(2, 2)
    pooled = scatter(phi(torch.cat([x, z[batch]], dim=-1)), batch, 0, 2,
                     'sum')
    expected = rho(torch.cat([pooled, z], dim=-1))
    assert torch.allclose(model(x, z, batch), expected, atol=1e-6)
    with pytest.raises(ValueError, match="fusion='film' .* channel list"):
        DeepSetsConditional(phi, rho, context_channels=2, fusion='film')
    with pytest.raises(ValueError, match="fusion='add' .* unknown"):
        DeepSetsConditional(torch.nn.ReLU(), rho, context_channels=2,
                            fusion='add')


@pytest.mark.parametrize('fusion', FUSIONS)
def test_one_layer_phi_still_sees_the_context(fusion):
    # With context_in_rho=False the context reaches the output only through
    # phi; a one-layer phi must not drop the modulation.
    model = DeepSetsConditional([3, 8], [8, 2], context_channels=2,
                                fusion=fusion, context_in_rho=False)
    x, batch = make_batch([3, 3], 3)
    z = torch.randn(2, 2)
    out = model(x, z, batch)
    assert torch.allclose(out, reference(model, x, z, batch, 2), atol=1e-6)
    assert not torch.allclose(out, model(x, 2 * z + 1, batch), atol=1e-3)


def test_repr():
    model = DeepSetsConditional([3, 8], [8, 2], context_channels=4,
                                fusion='film')
    assert str(model) == (
        "DeepSetsConditional(phi=SplitMLP(3, 8), rho=MLP(12, 2), "
        "context_channels=4, fusion='film', context_in_rho=True, "
        "aggr=SumAggregation())")
    assert str(DeepSetsConditional([3, 8, 4], [4, 2], context_channels=4,
                                   fusion='film', context_in_rho=False)) == (
        "DeepSetsConditional(phi_first=MLP(3, 8), phi=SplitMLP(8, 4), "
        "rho=MLP(4, 2), context_channels=4, fusion='film', "
        "context_in_rho=False, aggr=SumAggregation())")


@pytest.mark.parametrize('build', [
    lambda: DeepSetsConditional([3, 8], [8, 2], 2, fusion='add'),
    lambda: DeepSetsConditional([3, 8], [8, 2], 2, fusion='film'),
    lambda: DeepSetsConditional(torch.nn.Linear(3, 8), [8, 2], 2,
                                fusion='add'),
    lambda: DeepSetsConditionalEquivariant([3, 2], 2, fusion='add'),
    lambda: DeepSetsConditionalEquivariant([3, 2], 2, fusion='film'),
], ids=['add', 'film', 'add_module', 'equivariant_add', 'equivariant_film'])
def test_one_feature_does_not_broadcast_against_the_context(build):
    # A one-layer phi takes the context projection (add) or modulation
    # (FiLM) at its input, 3 features wide: a 1-feature x would broadcast
    # against it, and the model would run on the wrong data.
    model = build()
    x, batch = make_batch([2, 3], 1)
    for grouping in (dict(batch=batch), dict(ptr=torch.tensor([0, 2, 5]))):
        with pytest.raises(ValueError, match="'x' has 1 features per "
                           "element but the model expects 3"):
            model(x, torch.randn(2, 2), **grouping)


def test_bad_input():
    with pytest.raises(ValueError, match="Unknown 'fusion' 'mul'; valid "
                       "options are 'concat', 'film', 'add'"):
        DeepSetsConditional([3, 8], [8, 2], context_channels=2, fusion='mul')
    with pytest.raises(ValueError, match="'context_channels' must be"):
        DeepSetsConditional([3, 8], [8, 2], context_channels=0)
    with pytest.raises(ValueError, match="'rho' takes 9 input channels but "
                       "'phi' pooled with SumAggregation\\(\\) gives 8 \\+ 2 "
                       "context features per set; make rho's input width 10"):
        DeepSetsConditional([3, 8], torch.nn.Linear(9, 1),
                            context_channels=2)
    model = DeepSetsConditional([3, 8], [8, 2], context_channels=2)
    x, batch = make_batch([2, 3], 3)
    with pytest.raises(ValueError, match="'context' has 3 rows but the batch "
                       "holds 2 sets"):
        model(x, torch.randn(3, 2), batch, dim_size=2)
    with pytest.raises(ValueError, match="'context' has 3 features but "
                       "'context_channels' is 2"):
        model(x, torch.randn(2, 3), batch)
    with pytest.raises(ValueError, match="'x' has 3 features per element but "
                       "the model expects 4"):
        DeepSetsConditional([4, 8], [8, 2], context_channels=2)(
            x, torch.randn(2, 2), batch)
    # Too few context rows for the sets in 'batch', and one row per element
    # instead of per set: both name the context and the number of sets.
    with pytest.raises(ValueError, match=r"'context' has 1 rows but the "
                       r"batch holds 2 sets; give one context row per set, "
                       r"shape \[2, 2\]"):
        model(x, torch.randn(1, 2), batch)
    with pytest.raises(ValueError, match="'context' has 5 rows but the batch "
                       "holds 2 sets"):
        model(x, torch.randn(5, 2), batch)
    with pytest.raises(ValueError, match=r"'context' must be a matrix "
                       r"\[num_sets, context_channels\] = \[2, 2\]"):
        model(x, torch.randn(2), batch)
    with pytest.raises(TypeError, match="'context' must be a torch.Tensor"):
        model(x, [[0.0, 1.0]], batch)
