import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import AGGRS, make_batch
from tests.strategies import set_sizes
from torch_geometric_deepsets import (
    DeepSetsConditionalEquivariant,
    DeepSetsEquivariant,
    PermutationEquivariantLayer,
)
from torch_geometric_deepsets.testing import (
    assert_permutation_equivariant,
    assert_permutation_invariant,
)


@pytest.mark.parametrize('aggr', AGGRS)
@pytest.mark.parametrize('tied', [False, True])
def test_stack_equals_layers_by_hand(aggr, tied):
    model = DeepSetsEquivariant([3, 8, 8, 2], aggr=aggr, tied=tied,
                                act='tanh')
    x, batch = make_batch([3, 0, 2, 4], 3, shuffle=True)
    h = x
    for i, layer in enumerate(model.layers):
        h = layer(h, batch, dim_size=4)
        if i < 2:
            h = torch.tanh(h)
    assert torch.allclose(model(x, batch, dim_size=4), h, atol=1e-6)

    readout = DeepSetsEquivariant([3, 8, 2], aggr=aggr, tied=tied,
                                  readout='max', plain_last=False)
    h = torch.relu(readout.layers[1](torch.relu(readout.layers[0](
        x, batch, dim_size=4)), batch, dim_size=4))
    expected = torch.stack([
        h[batch == s].max(0).values if (batch == s).any() else
        torch.zeros(2) for s in range(4)
    ])
    assert torch.allclose(readout(x, batch, dim_size=4), expected, atol=1e-6)


@given(sizes=set_sizes, aggr=st.sampled_from(AGGRS), tied=st.booleans(),
       seed=st.integers(0, 999))
def test_equivariance_and_invariance_property(sizes, aggr, tied, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, batch = make_batch(sizes, 3, generator=gen)
    model = DeepSetsEquivariant([3, 8, 2], aggr=aggr, tied=tied)
    assert_permutation_equivariant(model, x, batch, dim_size=len(sizes),
                                   generator=gen)
    pooled = DeepSetsEquivariant([3, 8, 2], aggr=aggr, tied=tied,
                                 readout='sum')
    assert_permutation_invariant(pooled, x, batch, dim_size=len(sizes),
                                 generator=gen)
    out = pooled(x, batch, dim_size=len(sizes))
    for s in range(len(sizes)):
        assert torch.allclose(out[s:s + 1], pooled(x[batch == s]), atol=1e-5)


@pytest.mark.parametrize('aggr', AGGRS)
def test_index_equals_ptr_and_gradients(aggr):
    model = DeepSetsEquivariant([3, 8, 2], aggr=aggr, readout='mean')
    x, batch = make_batch([3, 0, 2], 3)
    x.requires_grad_()
    out = model(x, batch, dim_size=3)
    assert torch.allclose(out, model(x, ptr=torch.tensor([0, 3, 3, 5])),
                          atol=1e-6)
    assert torch.equal(out[1], torch.zeros(2))
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_dropout_between_layers_only_in_training():
    model = DeepSetsEquivariant([3, 64, 2], dropout=0.5)
    x, batch = make_batch([20, 20], 3)
    model.eval()
    assert torch.equal(model(x, batch), model(x, batch))
    model.train()
    assert not torch.equal(model(x, batch), model(x, batch))


def test_repr():
    model = DeepSetsEquivariant([3, 8, 2], aggr='max', tied=True,
                                readout='sum')
    assert str(model) == ('DeepSetsEquivariant([3, 8, 2], '
                          'aggr=MaxAggregation(), tied=True, '
                          'readout=SumAggregation())')
    assert str(DeepSetsEquivariant([3, 2])) == (
        'DeepSetsEquivariant([3, 2], aggr=SumAggregation(), tied=False)')
    assert str(DeepSetsEquivariant([3, 2], act='tanh', dropout=0.5,
                                   plain_last=False)) == (
        'DeepSetsEquivariant([3, 2], aggr=SumAggregation(), tied=False, '
        'act=Tanh(), dropout=0.5, plain_last=False)')
    assert all(isinstance(m, PermutationEquivariantLayer)
               for m in model.layers)


def test_bad_input():
    for bad in ([3], [3, 0], [3, -2, 4], [3, 8.0], [-1, -1], 3, 'abc'):
        with pytest.raises(ValueError, match="'channels' as a channel list"):
            DeepSetsEquivariant(bad)
    with pytest.raises(ValueError, match="'dropout' must lie in"):
        DeepSetsEquivariant([3, 2], dropout=1.5)
    with pytest.raises(ValueError, match="Unknown 'aggr'"):
        DeepSetsEquivariant([3, 2], readout='maxx')
    model = DeepSetsEquivariant([3, 2])
    with pytest.raises(ValueError, match="'x' has 4 features"):
        model(torch.randn(2, 4))
    with pytest.raises(ValueError,
                       match="'batch' has 1 entries but 'x' has 2"):
        model(torch.randn(2, 3), torch.tensor([0]))


@pytest.mark.parametrize('plain_last', [True, False])
def test_in_place_relu_equals_relu_module_with_gradients(plain_last):
    # Threshold(0, 0) is the same function as a ReLU: same outputs and
    # gradients, double backward included.
    torch.manual_seed(0)
    fast = DeepSetsEquivariant([3, 8, 8, 2], aggr='max',
                               plain_last=plain_last).double()
    slow = DeepSetsEquivariant([3, 8, 8, 2], aggr='max',
                               act=torch.nn.Threshold(0.0, 0.0),
                               plain_last=plain_last).double()
    slow.load_state_dict(fast.state_dict())
    assert type(fast.act) is torch.nn.ReLU
    assert type(slow.act) is not torch.nn.ReLU
    x, batch = make_batch([4, 0, 1, 6], 3, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = fast(x1, batch, dim_size=4)
    expected = slow(x2, batch, dim_size=4)
    assert torch.equal(out, expected)
    out.square().sum().backward()
    expected.square().sum().backward()
    assert torch.equal(x1.grad, x2.grad)
    for a, b in zip(fast.parameters(), slow.parameters()):
        assert torch.equal(a.grad, b.grad)
    assert torch.autograd.gradgradcheck(
        lambda t: fast(t, batch, dim_size=4), (x.clone().requires_grad_(), ))


def test_act_replaced_after_construction_is_used():
    torch.manual_seed(0)
    model = DeepSetsEquivariant([3, 8, 2]).eval()
    x, batch = make_batch([4, 2], 3)
    model.act = torch.nn.Tanh()
    hidden = torch.tanh(model.layers[0](x, batch))
    assert torch.allclose(model(x, batch), model.layers[1](hidden, batch),
                          atol=1e-6)


def test_input_is_validated_once_per_call_not_per_layer(monkeypatch):
    # The layers of the stack get input the model validated: the prologue
    # runs once, while hooks on a layer still run.
    pool_module = sys.modules['torch_geometric_deepsets.sets']
    calls = []
    resolve = pool_module.resolve_sets
    monkeypatch.setattr(pool_module, 'resolve_sets',
                        lambda *a, **k: calls.append(1) or resolve(*a, **k))
    model = DeepSetsEquivariant([3, 8, 8, 8, 2], readout='sum')
    seen = []
    model.layers[2].register_forward_hook(lambda m, i, o: seen.append(o))
    x, batch = make_batch([4, 0, 2], 3)
    out = model(x, batch, dim_size=3)
    assert len(calls) == 1
    assert len(seen) == 1 and seen[0].shape == (6, 8)
    assert torch.equal(out, model.readout(
        model.layers[3](torch.relu(seen[0]), batch, dim_size=3), batch,
        dim_size=3))


def conditioned_reference(model, x, z, batch, num_sets):
    fusion = model.context_fusion
    h = x
    if fusion.fusion == 'concat':
        h = torch.cat([x, z[batch]], dim=-1)
    elif fusion.fusion == 'add':
        h = x + fusion.lin(z)[batch]
    for i, layer in enumerate(model.layers):
        h = layer(h, batch, dim_size=num_sets)
        if i < len(model.layers) - 1:
            h = torch.relu(h)
        if i == 0 and fusion.fusion == 'film':
            gamma, beta = fusion.lin(z).chunk(2, dim=-1)
            h = h * (1 + gamma[batch]) + beta[batch]
    return h



@pytest.mark.parametrize('fusion', ['concat', 'film', 'add'])
def test_equivariant_model_with_context_formula(fusion):
    model = DeepSetsConditionalEquivariant([3, 8, 2], 4, fusion=fusion)
    x, batch = make_batch([3, 0, 1, 5], 3, shuffle=True)
    z = torch.randn(4, 4)
    out = model(x, z, batch, dim_size=4)
    assert out.shape == (9, 2)
    assert torch.allclose(out, conditioned_reference(model, x, z, batch, 4),
                          atol=1e-6)
    # The output of each element depends on its set's context.
    other = z.clone()
    other[3] += 1.0
    changed = model(x, other, batch, dim_size=4)
    assert torch.allclose(changed[batch != 3], out[batch != 3], atol=1e-6)
    assert not torch.allclose(changed[batch == 3], out[batch == 3],
                              atol=1e-4)
    ptr = torch.tensor([0, 3, 3, 4, 9])
    order = torch.argsort(batch, stable=True)
    assert torch.allclose(model(x[order], z, ptr=ptr), out[order],
                          atol=1e-6)



@given(sizes=set_sizes, fusion=st.sampled_from(['concat', 'film', 'add']),
       seed=st.integers(0, 999))
def test_equivariant_model_with_context_is_equivariant(sizes, fusion, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, batch = make_batch(sizes, 3, generator=gen)
    z = torch.randn(len(sizes), 2, generator=gen)
    model = DeepSetsConditionalEquivariant([3, 8, 2], 2, fusion=fusion,
                                           aggr='max')
    assert_permutation_equivariant(model, x, batch, dim_size=len(sizes),
                                   set_inputs={'context': z}, generator=gen)



def test_equivariant_model_with_context_errors():
    model = DeepSetsConditionalEquivariant([3, 8, 2], 2)
    x, batch = torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    # A forgotten context: the set ids land in its place.
    with pytest.raises(TypeError, match=r"looks like the set ids: the "
                       r"context comes second, model\(x, context, batch\)"):
        model(x, batch)
    with pytest.raises(ValueError, match=r"takes a per-set 'context' "
                       r"\[num_sets, 2\] as its second argument"):
        model(x, batch=batch)
    with pytest.raises(ValueError, match="'context' has 3 rows but the batch "
                       "holds 2 sets"):
        model(x, torch.randn(3, 2), batch)
    # A context given to a model that takes none names the models that do.
    plain = DeepSetsEquivariant([3, 2])
    with pytest.raises(TypeError, match=r"'batch' must be an integer tensor "
                       r".*looks like a per-set context.*model\(x, context, "
                       r"batch\)"):
        plain(x, torch.randn(2, 2), batch)
    with pytest.raises(ValueError, match="takes no 'context'.*"
                       "DeepSetsConditionalEquivariant"):
        plain(x, batch, context=torch.randn(2, 2))
    with pytest.raises(ValueError, match="'context_channels' must be"):
        DeepSetsConditionalEquivariant([3, 2], 0)
    with pytest.raises(ValueError, match="Unknown 'fusion'"):
        DeepSetsConditionalEquivariant([3, 2], 2, fusion='mul')
    # Leading dimensions: every slice is its own batch of sets, sharing the
    # context rows, or with its own.
    z = torch.randn(2, 2)
    stacked = model(x.expand(3, 4, 3), z, batch)
    assert stacked.shape == (3, 4, 2)
    assert torch.allclose(stacked[2], model(x, z, batch), atol=1e-6)
    own = torch.randn(3, 2, 2)
    assert torch.allclose(model(x.expand(3, 4, 3), own, batch)[1],
                          model(x, own[1], batch), atol=1e-6)
    with pytest.raises(ValueError, match=r"leading dimensions \(3,\)"):
        model(x.expand(3, 4, 3), torch.randn(2, 2, 2), batch)
    plain = DeepSetsEquivariant([3, 2])
    assert torch.equal(plain(x.expand(2, 4, 3), batch)[1], plain(x, batch))
    assert str(model) == ("DeepSetsConditionalEquivariant([3, 8, 2], "
                          "aggr=SumAggregation(), tied=False, "
                          "context_channels=2, fusion='concat')")
