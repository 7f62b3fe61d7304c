r"""What a PyG user expects from the models: lazy channels, options checked
when a model is built, and errors that say what to fix."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import make_batch, molecule
from tests.strategies import set_sizes
from torch_geometric.data import Batch
from torch_geometric.nn import SAGEConv, to_hetero
from torch_geometric.utils import scatter
from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsConditionalEquivariant,
    DeepSetsEquivariant,
    DeepSetsInvariant,
    DeepSetsPointCloud,
    PermutationEquivariantLayer,
)
from torch_geometric_deepsets.testing import assert_permutation_equivariant

MODELS = {
    'invariant': lambda: DeepSetsInvariant([3, 8], [8, 2]),
    'layer': lambda: PermutationEquivariantLayer(3, 4),
    'equivariant': lambda: DeepSetsEquivariant([3, 8, 2]),
    'point_cloud': lambda: DeepSetsPointCloud(3, 4, hidden_channels=8),
}


# The habit from global_add_pool(x, batch, size) ##############################


@pytest.mark.parametrize('name', list(MODELS))
def test_number_of_sets_in_the_ptr_slot_says_to_pass_dim_size(name):
    model = MODELS[name]()
    x, batch = torch.randn(5, 3), torch.tensor([0, 0, 1, 1, 2])
    with pytest.raises(TypeError, match=r"'ptr' must be a torch.Tensor "
                       r"\(got int\).*pass dim_size="):
        model(x, batch, 3)
    assert model(x, batch, dim_size=3).size(0) in (3, 5)


def test_number_of_sets_in_the_ptr_slot_of_the_conditional_model():
    model = DeepSetsConditional([3, 8], [8, 2], context_channels=2)
    x, batch = torch.randn(5, 3), torch.tensor([0, 0, 1, 1, 2])
    with pytest.raises(TypeError, match='pass dim_size='):
        model(x, torch.randn(3, 2), batch, 3)


# Lazy channels ###############################################################


def test_lazy_channels_are_found_at_the_first_call():
    x, batch = make_batch([3, 0, 4], 5)
    invariant = DeepSetsInvariant([-1, 16, 16], [-1, 8, 2])
    out = invariant(x, batch, dim_size=3)
    assert out.shape == (3, 2)
    assert invariant.phi.body.lins[0].weight.shape == (16, 5)
    # Once initialised, pooling moves in front of phi's last layer.
    reference = invariant.rho(scatter(invariant.phi(x), batch, 0, 3, 'sum'))
    assert torch.allclose(invariant(x, batch, dim_size=3), reference,
                          atol=1e-5)
    layer = PermutationEquivariantLayer(-1, 4, aggr='max')
    assert layer(x, batch).shape == (7, 4)
    assert layer.lin.weight.shape == (4, 5)
    assert layer.lin_pool.weight.shape == (4, 5)
    assert_permutation_equivariant(layer, x, batch)
    equivariant = DeepSetsEquivariant([-1, 8, 2], readout='mean')
    assert equivariant(x, batch, dim_size=3).shape == (3, 2)
    for fusion in ('concat', 'film'):
        conditional = DeepSetsConditional([-1, 8, 8], [-1, 2],
                                          context_channels=3, fusion=fusion)
        assert conditional(x, torch.randn(3, 3), batch).shape == (3, 2)


@pytest.mark.parametrize('fusion', ['concat', 'film', 'add'])
@pytest.mark.parametrize('model', ['conditional', 'conditional_no_rho',
                                   'equivariant'])
def test_lazy_context_width_is_found_at_the_first_call(model, fusion):
    x, batch = make_batch([3, 0, 4], 5)
    context = torch.randn(3, 6)

    def build(width):
        torch.manual_seed(0)
        if model == 'equivariant':
            return DeepSetsConditionalEquivariant([5, 8, 4], width,
                                                  fusion=fusion)
        return DeepSetsConditional([5, 8, 4], [4, 2], context_channels=width,
                                   fusion=fusion,
                                   context_in_rho=model == 'conditional')

    def call(module, z):
        return module(x, z, batch, dim_size=3)

    lazy = build(-1)
    out = call(lazy, context)
    # The same model with the width given, and the lazy model's weights.
    eager = build(6)
    eager.load_state_dict(lazy.state_dict())
    assert torch.allclose(out, call(eager, context), atol=1e-6)
    assert {k: v.shape for k, v in lazy.state_dict().items()} == \
        {k: v.shape for k, v in eager.state_dict().items()}
    # The model depends on the context, and is invariant/equivariant for a
    # fixed one.
    assert not torch.allclose(out, call(lazy, context + 1.0))
    # Once found, another width is an error naming the context.
    with pytest.raises(ValueError, match=r"'context' has 4 features but "
                       r"'context_channels' is 6 \(found at the first call"):
        call(lazy, torch.randn(3, 4))
    assert '-1' in repr(lazy)


def test_lazy_context_width_before_the_first_call():
    # Nothing to check the width against yet; rho given as a module is
    # checked at the first call, once the context width is known.
    model = DeepSetsConditional([5, 8], torch.nn.Linear(8 + 3, 2),
                                context_channels=-1)
    x, batch = make_batch([2, 3], 5)
    assert model(x, torch.randn(2, 3), batch).shape == (2, 2)
    with pytest.raises(ValueError, match="'rho' takes 11 input channels"):
        DeepSetsConditional([5, 8], torch.nn.Linear(11, 2),
                            context_channels=-1)(x, torch.randn(2, 4), batch)
    with pytest.raises(ValueError, match=r"'context_channels' must be a "
                       r"positive int, or -1"):
        DeepSetsConditional([5, 8], [8, 2], context_channels=-2)


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


# Options checked when a model is built #######################################


@pytest.mark.parametrize('build', [
    lambda d: DeepSetsInvariant([3, 8], [8, 2], dropout=d),
    lambda d: DeepSetsEquivariant([3, 8], dropout=d),
    lambda d: DeepSetsConditional([3, 8], [8, 2], context_channels=2,
                                  dropout=d),
    lambda d: DeepSetsPointCloud(dropout=d),
])
def test_dropout_outside_zero_one_is_refused_at_construction(build):
    for bad in (-0.1, 1.0, 1.5, True):
        with pytest.raises(ValueError,
                           match=r"'dropout' must lie in \[0, 1\)"):
            build(bad)


def test_channel_lists_and_aggr_are_checked_at_construction():
    for bad in ([3], [3, 0], [3, -2, 4], [3, 8.0], [-1, -1]):
        with pytest.raises(ValueError, match="'phi' as a channel list"):
            DeepSetsInvariant(bad, [8, 2])
    with pytest.raises(ValueError, match="'channels' as a channel list"):
        DeepSetsEquivariant([3, -1])
    with pytest.raises(ValueError, match="did you mean 'sum'"):
        DeepSetsEquivariant([3, 4], aggr='summ')
    with pytest.raises(ValueError, match="did you mean 'mean'"):
        DeepSetsInvariant([3, 8], [8, 2], aggr='maen')


# Input checks that say what to fix ###########################################


@pytest.mark.parametrize('name', list(MODELS))
def test_integer_and_float64_features_say_what_to_convert(name):
    model = MODELS[name]()
    batch = torch.tensor([0, 0, 1])
    with pytest.raises(TypeError, match=r"'x' holds torch.int64 values but "
                       r"the first layer \(Linear\) takes torch.float32 "
                       r"features; convert with x.to\(torch.float32\)"):
        model(torch.ones(3, 3, dtype=torch.long), batch)
    with pytest.raises(TypeError, match=r"'x' is torch.float64 but the "
                       r"model's parameters are torch.float32"):
        model(torch.randn(3, 3, dtype=torch.float64), batch)
    with pytest.raises(ValueError, match="'x' must have a feature dimension"):
        model(torch.randn(3), batch)


def test_integer_tokens_into_an_embedding_are_fine():
    phi = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(1),
                              torch.nn.Linear(4, 8))
    model = DeepSetsInvariant(phi, [8, 1])
    tokens = torch.tensor([[3], [7], [1]])
    assert model(tokens, torch.tensor([0, 0, 1])).shape == (2, 1)


def test_features_under_autocast_are_fine():
    model = DeepSetsInvariant([3, 8], [8, 2])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(torch.randn(4, 3, dtype=torch.bfloat16),
                    torch.tensor([0, 0, 1, 1]))
    assert out.shape == (2, 2)


class Doubling(torch.nn.Module):
    r"""A phi whose output width shows only when it runs."""
    def __init__(self, in_channels):
        super().__init__()
        self.lin = torch.nn.Linear(in_channels, 6)

    def forward(self, x):
        return torch.cat([self.lin(x), self.lin(x).relu()], dim=-1)


def test_custom_phi_of_the_wrong_width_names_both_widths():
    # Widths a channel list or Sequential shows are checked when the model
    # is built; a custom phi's at the first call.
    with pytest.raises(ValueError, match="'rho' takes 8 input channels but "
                       r"'phi' pooled with SumAggregation\(\) gives 12"):
        DeepSetsInvariant(torch.nn.Sequential(torch.nn.Linear(3, 12),
                                              torch.nn.ReLU()), [8, 2])
    model = DeepSetsInvariant(Doubling(3), [8, 2])
    with pytest.raises(ValueError, match=r"'rho' takes 8 input channels but "
                       r"'phi' pooled with SumAggregation\(\) gives 12 "
                       r"features per set; make rho's input width 12"):
        model(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))
    conditional = DeepSetsConditional(Doubling(5), torch.nn.Linear(9, 1),
                                      context_channels=2)
    with pytest.raises(ValueError, match=r"'rho' takes 9 input channels but "
                       r"'phi' pooled with SumAggregation\(\) gives 12 \+ 2 "
                       r"context features per set; make rho's input width "
                       r"14"):
        conditional(torch.randn(4, 3), torch.randn(2, 2),
                    torch.tensor([0, 0, 1, 1]))


def test_context_of_another_dtype_says_what_to_convert():
    model = DeepSetsConditional([3, 8], [8, 2], context_channels=2)
    with pytest.raises(TypeError, match=r"'context' is torch.float64 but "
                       r"'x' is torch.float32"):
        model(torch.randn(4, 3), torch.randn(2, 2, dtype=torch.float64),
              torch.tensor([0, 0, 1, 1]))


# A list of aggregations in message passing ###################################


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


# An equivariant model conditioned on a per-set context #######################


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
