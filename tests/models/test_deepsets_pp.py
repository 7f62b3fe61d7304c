import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import AGGRS, NoSync, make_batch
from tests.strategies import set_sizes
from torch_geometric.nn.norm import LayerNorm
from torch_geometric_deepsets import (
    DeepSetsPlusPlus,
    EquivariantResidualBlock,
    PermutationEquivariantLayer,
)
from torch_geometric_deepsets.testing import (
    RELATIVE_TOLERANCES,
    assert_permutation_equivariant,
    assert_permutation_invariant,
    relative_error,
)


def set_norm(x, batch, num_sets, weight, bias, eps=1e-5):
    r"""Set norm by hand: standardise each set over all its elements and
    features together, then scale and shift every feature."""
    out = torch.empty_like(x)
    for s in range(num_sets):
        rows = batch == s
        if rows.any():
            xs = x[rows]
            mean = xs.mean()
            var = ((xs - mean)**2).mean()
            out[rows] = (xs - mean) / torch.sqrt(var + eps) * weight + bias
    return out


def test_pyg_layer_norm_in_graph_mode_is_set_norm():
    # Pins the PyG behaviour DeepSets++ relies on, with an empty set, a
    # singleton and unsorted rows.
    norm = LayerNorm(3, mode='graph').double()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, -0.5]))
        norm.bias.copy_(torch.tensor([0.5, -1.0, 0.0]))
    x, batch = make_batch([4, 0, 1, 3], 3, dtype=torch.float64, shuffle=True)
    expected = set_norm(x, batch, 4, norm.weight, norm.bias)
    assert torch.allclose(norm(x, batch, 4), expected, atol=1e-12)
    # A singleton with one feature is all mean: finite output and gradient.
    one = torch.tensor([[3.0]], dtype=torch.float64, requires_grad=True)
    out = LayerNorm(1).double()(one, torch.zeros(1, dtype=torch.long), 1)
    out.sum().backward()
    assert torch.equal(out.detach(), torch.zeros(1, 1, dtype=torch.float64))
    assert torch.isfinite(one.grad).all()
    # Without a batch vector PyG divides by (std + eps) instead: the blocks
    # therefore always pass the set ids.
    single = torch.zeros(x.size(0), dtype=torch.long)
    assert not torch.allclose(norm(x, None), norm(x, single, 1), atol=1e-9)


def test_block_by_hand():
    torch.manual_seed(0)
    block = EquivariantResidualBlock(3, aggr='mean', act='tanh').double()
    with torch.no_grad():  # non-trivial affine maps of both norms
        for norm in (block.norm1, block.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    x, batch = make_batch([3, 0, 1, 5], 3, dtype=torch.float64, shuffle=True)
    h = torch.tanh(set_norm(x, batch, 4, block.norm1.weight,
                            block.norm1.bias))
    h = block.lin1(h, batch, dim_size=4)
    h = torch.tanh(set_norm(h, batch, 4, block.norm2.weight,
                            block.norm2.bias))
    expected = x + block.lin2(h, batch, dim_size=4)
    assert torch.allclose(block(x, batch, dim_size=4), expected, atol=1e-12)


def test_clean_path_is_the_identity_when_the_branch_is_zero():
    block = EquivariantResidualBlock(4)
    with torch.no_grad():
        block.lin2.lin.weight.zero_()
        block.lin2.lin.bias.zero_()
        block.lin2.lin_pool.weight.zero_()
    x, batch = make_batch([3, 1, 0], 4)
    assert torch.equal(block(x, batch, dim_size=3), x)


def test_model_by_hand():
    torch.manual_seed(0)
    model = DeepSetsPlusPlus(3, 8, 2, num_blocks=2, aggr='max',
                             readout='sum').double()
    x, batch = make_batch([4, 0, 1, 6], 3, dtype=torch.float64, shuffle=True)
    h = model.lin_in(x, batch, dim_size=4)
    for block in model.blocks:
        h = block(h, batch, dim_size=4)
    h = torch.relu(set_norm(h, batch, 4, model.norm_out.weight,
                            model.norm_out.bias))
    h = model.lin_out(h, batch, dim_size=4)
    expected = torch.stack([h[batch == s].sum(0) for s in range(4)])
    assert torch.allclose(model(x, batch, dim_size=4), expected, atol=1e-12)
    assert sum(isinstance(m, PermutationEquivariantLayer)
               for m in model.modules()) == 2 * 2 + 2


@pytest.mark.parametrize('norm', ['layer_norm', None])
def test_other_norms(norm):
    torch.manual_seed(0)
    block = EquivariantResidualBlock(3, norm=norm)
    x, batch = make_batch([3, 2], 3)
    h = x if norm is None else torch.nn.functional.layer_norm(x, (3, ))
    h = block.lin1(torch.relu(h), batch)
    h = h if norm is None else torch.nn.functional.layer_norm(h, (3, ))
    expected = x + block.lin2(torch.relu(h), batch)
    assert torch.allclose(block(x, batch), expected, atol=1e-6)


@given(sizes=set_sizes, aggr=st.sampled_from(AGGRS), tied=st.booleans(),
       seed=st.integers(0, 999))
def test_equivariance_and_invariance_property(sizes, aggr, tied, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, batch = make_batch(sizes, 3, generator=gen)
    model = DeepSetsPlusPlus(3, 6, 2, num_blocks=2, aggr=aggr, tied=tied)
    assert_permutation_equivariant(model, x, batch, dim_size=len(sizes),
                                   generator=gen)
    pooled = DeepSetsPlusPlus(3, 6, 2, num_blocks=1, aggr=aggr, tied=tied,
                              readout='mean')
    assert_permutation_invariant(pooled, x, batch, dim_size=len(sizes),
                                 generator=gen)
    out = pooled(x, batch, dim_size=len(sizes))
    per_element = model(x, batch, dim_size=len(sizes))
    for s in range(len(sizes)):  # independent of the other sets
        assert torch.allclose(out[s:s + 1], pooled(x[batch == s]), atol=1e-5)
        assert torch.allclose(per_element[batch == s], model(x[batch == s]),
                              atol=1e-5)


@pytest.mark.parametrize('aggr', AGGRS)
def test_index_equals_ptr_and_empty_sets_have_finite_gradients(aggr):
    model = DeepSetsPlusPlus(3, 8, 2, num_blocks=2, aggr=aggr,
                             readout='sum')
    x, batch = make_batch([3, 0, 1, 2], 3)
    x.requires_grad_()
    out = model(x, batch, dim_size=4)
    assert torch.allclose(out, model(x, ptr=torch.tensor([0, 3, 3, 4, 6])),
                          atol=1e-6)
    assert torch.equal(out[1], torch.zeros(2))
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert model(x[:0]).shape == (1, 2)


@pytest.mark.parametrize('aggr', AGGRS)
def test_gradcheck(aggr):
    torch.manual_seed(0)
    model = DeepSetsPlusPlus(3, 4, 2, num_blocks=1, aggr=aggr,
                             act='tanh').double()
    x = (torch.randperm(21, dtype=torch.float64) / 8 - 1.25).view(7, 3)
    x.requires_grad_()
    batch = torch.tensor([0, 0, 0, 2, 2, 3, 3])  # set 1 empty, no ties
    params = tuple(model.parameters())

    def f(x, *weights):
        return model(x, batch, dim_size=4)

    assert torch.autograd.gradcheck(f, (x, ) + params, atol=1e-6)
    assert torch.autograd.gradgradcheck(lambda t: f(t), (x, ), atol=1e-6)


def test_nonfinite_stays_in_its_set():
    model = DeepSetsPlusPlus(3, 8, 2, num_blocks=2)
    x, batch = make_batch([4, 3, 5], 3, shuffle=True)
    x[(batch == 1).nonzero()[0, 0], 1] = float('nan')
    out = model(x, batch)
    clean = batch != 1
    assert torch.isfinite(out[clean]).all()
    alone = model(x[clean], torch.tensor([0, -1, 1])[batch[clean]])
    assert torch.allclose(alone, out[clean], atol=1e-6)


def test_dropout_only_in_training():
    model = DeepSetsPlusPlus(3, 32, 2, num_blocks=2, dropout=0.5)
    x, batch = make_batch([20, 20], 3)
    model.eval()
    assert torch.equal(model(x, batch), model(x, batch))
    model.train()
    assert not torch.equal(model(x, batch), model(x, batch))


def test_repr():
    model = DeepSetsPlusPlus(3, 8, 2, num_blocks=3, aggr='max',
                             readout='sum')
    assert str(model) == ('DeepSetsPlusPlus(3, 8, 2, num_blocks=3, '
                          'aggr=MaxAggregation(), tied=False, '
                          'norm=set_norm, readout=SumAggregation())')
    assert str(DeepSetsPlusPlus(3, 8, 2, 0, act='tanh', dropout=0.1,
                                norm=None)) == (
        'DeepSetsPlusPlus(3, 8, 2, num_blocks=0, aggr=SumAggregation(), '
        'tied=False, norm=None, act=Tanh(), dropout=0.1)')
    assert str(model.blocks[0]) == ('EquivariantResidualBlock(8, '
                                    'aggr=MaxAggregation(), tied=False, '
                                    'norm=set_norm)')
    assert str(EquivariantResidualBlock(4, act='tanh', dropout=0.2)) == (
        'EquivariantResidualBlock(4, aggr=SumAggregation(), tied=False, '
        'norm=set_norm, act=Tanh(), dropout=0.2)')


def test_reset_puts_norms_back_to_the_identity():
    model = DeepSetsPlusPlus(3, 8, 2, num_blocks=3, aggr='max',
                             readout='sum')
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(2.0)
    model.reset_parameters()
    assert torch.equal(model.norm_out.weight, torch.ones(8))
    assert torch.equal(model.blocks[0].norm1.bias, torch.zeros(8))


def test_bad_input():
    with pytest.raises(ValueError, match="'norm' must be one of"):
        DeepSetsPlusPlus(3, 8, 2, 1, norm='batch_norm')
    with pytest.raises(ValueError, match="'num_blocks' must be a non-neg"):
        DeepSetsPlusPlus(3, 8, 2, -1)
    with pytest.raises(ValueError, match="'dropout' must lie in"):
        EquivariantResidualBlock(8, dropout=1.0)
    # Each error names the argument given, not the layer built from it.
    for bad, error in ((0, ValueError), (-2, ValueError), (2.0, TypeError)):
        with pytest.raises(error, match="'channels' must be a positive int, "
                           "or -1"):
            EquivariantResidualBlock(bad)
    for name in ('hidden_channels', 'out_channels'):
        args = dict(in_channels=3, hidden_channels=8, out_channels=2)
        with pytest.raises(ValueError, match=f"^'{name}' must be a positive "
                           f"int \\(got 0\\)$"):
            DeepSetsPlusPlus(**dict(args, **{name: 0}), num_blocks=1)
    with pytest.raises(ValueError, match="'in_channels' must be a positive "
                       "int, or -1"):
        DeepSetsPlusPlus(0, 8, 2, 1)
    with pytest.raises(ValueError, match="'dropout' must lie in"):
        DeepSetsPlusPlus(3, 8, 2, 0, dropout=1.5)  # no block to check it
    model = DeepSetsPlusPlus(3, 8, 2, 1)
    with pytest.raises(ValueError, match="'x' has 4 features per element but "
                       "the model expects 3"):
        model(torch.randn(2, 4))
    with pytest.raises(ValueError,
                       match="'batch' has 1 entries but 'x' has 2"):
        model(torch.randn(2, 3), torch.tensor([0]))
    with pytest.raises(TypeError, match="'x' holds torch.int64 values"):
        model(torch.ones(2, 3, dtype=torch.long))


@pytest.mark.parametrize('aggr', AGGRS)
def test_device_path_reads_no_value(aggr):
    # What GPUs and compiled graphs run: no host read, no data-dependent
    # shape, forward and backward (meta tensors take the device path).
    model = DeepSetsPlusPlus(3, 8, 2, num_blocks=2, aggr=aggr,
                             readout=aggr).to('meta')
    x = torch.randn(50, 3, device='meta', requires_grad=True)
    index = torch.empty(50, dtype=torch.long, device='meta')
    ptr = torch.empty(7, dtype=torch.long, device='meta')
    with NoSync():
        model(x, index, dim_size=6).sum().backward()
        model(x, ptr=ptr).sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16,
                                   torch.float64])
def test_dtypes_match_float32(dtype):
    torch.manual_seed(0)
    model = DeepSetsPlusPlus(3, 8, 2, num_blocks=2, readout='mean')
    other = DeepSetsPlusPlus(3, 8, 2, num_blocks=2, readout='mean')
    other.load_state_dict(model.state_dict())
    x, batch = make_batch([5, 0, 1, 9], 3)
    with torch.no_grad():
        ref = model(x, batch, dim_size=4)
        out = other.to(dtype)(x.to(dtype), batch, dim_size=4)
    assert out.dtype == dtype
    assert relative_error(out, ref) <= RELATIVE_TOLERANCES[dtype]


def test_input_is_validated_once_per_call_not_per_layer(monkeypatch):
    # Blocks and layers get input the model validated: the prologue runs
    # once however deep the stack, while hooks on a block still run.
    pool_module = sys.modules['torch_geometric_deepsets.sets']
    calls = []
    resolve = pool_module.resolve_sets
    monkeypatch.setattr(pool_module, 'resolve_sets',
                        lambda *a, **k: calls.append(1) or resolve(*a, **k))
    model = DeepSetsPlusPlus(3, 8, 2, num_blocks=4)
    seen = []
    model.blocks[3].register_forward_hook(lambda m, i, o: seen.append(o))
    x, batch = make_batch([4, 0, 2], 3)
    out = model(x, batch, dim_size=3)
    assert len(calls) == 1
    assert len(seen) == 1
    h = torch.relu(set_norm(seen[0], batch, 3, model.norm_out.weight,
                            model.norm_out.bias))
    assert torch.allclose(out, model.lin_out(h, batch, dim_size=3),
                          atol=1e-6)
    calls.clear()
    model.blocks[0](x.new_ones(6, 8), batch, dim_size=3)
    assert len(calls) == 1


def test_lazy_input_width():
    torch.manual_seed(0)
    model = DeepSetsPlusPlus(-1, 8, 2, num_blocks=1, readout='sum')
    x, batch = make_batch([3, 0, 4], 5)
    out = model(x, batch, dim_size=3)
    assert model.lin_in.lin.weight.shape == (8, 5)
    assert model.lin_in.lin_pool.weight.shape == (8, 5)
    assert torch.equal(out[1], torch.zeros(2))
    assert_permutation_invariant(model, x, batch, dim_size=3)
