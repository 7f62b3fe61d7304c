import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import AGGRS, make_batch
from tests.strategies import set_sizes
from torch_geometric.nn import aggr as A
from torch_geometric.nn.aggr import MultiAggregation, SumAggregation
from torch_geometric_deepsets import (
    DeepSetsEquivariant,
    DeepSetsInvariant,
    pool,
    resolve_aggr,
)
from torch_geometric_deepsets.pool import pooled_width


def test_pool_hand_computed(toy):
    x, index, ptr = toy
    expected = {
        'sum': [[4.0, -1.5], [1.0, 3.0], [5.0, 1.0]],
        'mean': [[2.0, -0.75], [1.0 / 3, 1.0], [5.0, 1.0]],
        'max': [[3.0, 0.5], [2.0, 4.0], [5.0, 1.0]],
    }
    for aggr, value in expected.items():
        out = pool(x, index, aggr=aggr)
        assert torch.allclose(out, torch.tensor(value))
        assert torch.equal(out, pool(x, ptr=ptr, aggr=aggr))


def test_pool_without_grouping_is_one_set(toy):
    x, _, _ = toy
    assert torch.allclose(pool(x), x.sum(0, keepdim=True))
    empty = pool(x[:0], aggr='max')
    assert empty.shape == (1, 2) and torch.equal(empty, torch.zeros(1, 2))


@pytest.mark.parametrize('aggr', AGGRS)
def test_empty_sets_pool_to_zero_with_finite_gradients(aggr):
    x = torch.randn(3, 4, requires_grad=True)
    index = torch.tensor([0, 0, 2])  # sets 1 and 3 are empty
    out = pool(x, index, dim_size=4, aggr=aggr)
    assert torch.equal(out[1], torch.zeros(4))
    assert torch.equal(out[3], torch.zeros(4))
    out_ptr = pool(x, ptr=torch.tensor([0, 2, 2, 3, 3]), aggr=aggr)
    assert torch.allclose(out, out_ptr)
    (out.sum() + out_ptr.sum()).backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_max_is_exact_for_negative_values():
    x = -torch.rand(5, 3) - 1.0
    index = torch.tensor([0, 0, 1, 1, 1])
    expected = torch.stack([x[:2].max(0).values, x[2:].max(0).values])
    assert torch.equal(pool(x, index, aggr='max'), expected)
    assert torch.equal(pool(x, ptr=torch.tensor([0, 2, 5]), aggr='max'),
                       expected)
    assert (expected < 0).all()


@given(sizes=set_sizes, aggr=st.sampled_from(AGGRS), seed=st.integers(0, 99))
def test_pool_independent_of_other_sets_and_row_order(sizes, aggr, seed):
    gen = torch.Generator().manual_seed(seed)
    x, batch = make_batch(sizes, 3, generator=gen)
    out = pool(x, batch, dim_size=len(sizes), aggr=aggr)
    for s, _ in enumerate(sizes):
        alone = pool(x[batch == s], aggr=aggr)
        assert torch.allclose(out[s:s + 1], alone, atol=1e-6)
    perm = torch.randperm(x.size(0), generator=gen)
    shuffled = pool(x[perm], batch[perm], dim_size=len(sizes), aggr=aggr)
    assert torch.allclose(out, shuffled, atol=1e-6)


@pytest.mark.parametrize('aggr', AGGRS + ['softmax', 'std', 'mul'])
def test_leading_dimensions_as_in_pyg(aggr):
    # PyG's aggregations reduce [*, N, F] along dim=-2, or along any other
    # dimension but the last, e.g. dim=0 for GATConv's [E, heads, C].
    x = torch.randn(2, 6, 3)
    index = torch.tensor([0, 0, 1, 1, 1, 2])
    expected = resolve_aggr(aggr)(x, index, dim=-2)
    assert torch.allclose(pool(x, index, aggr=aggr), expected, atol=1e-6)
    assert torch.allclose(pool(x, ptr=torch.tensor([0, 2, 5, 6]), aggr=aggr),
                          expected, atol=1e-6)
    heads = x.transpose(0, 1)  # [N, H, C]
    out = pool(heads, index, aggr=aggr, dim=0)
    assert out.shape == (3, 2, 3)
    assert torch.allclose(out, expected.transpose(0, 1), atol=1e-6)


#: Aggregations with a defined value for an empty set in PyG, and that value
#: (for zero input width 4).
PYG_EMPTY = {
    'sum': 0.0, 'mean': 0.0, 'max': 0.0, 'min': 0.0, 'mul': 1.0, 'var': 0.0,
    'std': 0.0, 'softmax': 0.0, 'powermean': 0.0,
}


@pytest.mark.parametrize('name', list(PYG_EMPTY) + ['median', 'quantile'])
@pytest.mark.parametrize('layout', ['leading', 'middle', 'trailing'])
def test_empty_set_gives_pygs_value_or_zero(name, layout):
    kwargs = {'q': [0.25, 0.75]} if name == 'quantile' else {}
    aggr = resolve_aggr(name, kwargs)
    x = torch.randn(5, 4)
    index = {'leading': [1, 1, 2, 2, 2], 'middle': [0, 0, 2, 2, 2],
             'trailing': [0, 0, 1, 1, 1]}[layout]
    index = torch.tensor(index)
    empty = {'leading': 0, 'middle': 1, 'trailing': 2}[layout]
    out = pool(x, index, dim_size=3, aggr=aggr)
    value = PYG_EMPTY.get(name, 0.0)  # quantiles: their fill_value, 0
    assert torch.equal(out[empty], torch.full_like(out[empty], value))
    if name in PYG_EMPTY:
        assert torch.equal(out, aggr(x, index, dim_size=3))
    for s in range(3):
        if s != empty:
            alone = pool(x[index == s], aggr=aggr)
            assert torch.allclose(out[s:s + 1], alone, atol=1e-6)


def test_empty_set_in_a_list_of_aggregations_gives_each_ones_value():
    x = torch.randn(4, 2)
    index = torch.tensor([0, 0, 2, 2])  # set 1 is empty
    out = pool(x, index, dim_size=3, aggr=['mul', 'std', 'median'])
    assert torch.equal(out[1], torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(out[[0, 2]], torch.cat([
        pool(x, index, dim_size=3, aggr=a)[[0, 2]]
        for a in ('mul', 'std', 'median')], dim=-1))


def test_quantile_matches_pyg_where_pyg_works():
    aggr = A.MedianAggregation()
    x = torch.randn(7, 3)
    index = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    assert torch.equal(pool(x, index, aggr=aggr), aggr(x, index))


@pytest.mark.parametrize('make, width', [
    (lambda: A.SortAggregation(k=2), 8),
    (lambda: A.SetTransformerAggregation(4, heads=1), 4),
    (lambda: A.GraphMultisetTransformer(4, k=2, heads=1), 4),
    (lambda: A.Set2Set(4, processing_steps=2), 8),
    (lambda: A.MulAggregation(), 4),
    (lambda: MultiAggregation(['sum', A.SortAggregation(k=1)]), 8),
])
@pytest.mark.parametrize('dim_size', [1, 2, 3])
def test_empty_sets_without_rows_get_pygs_empty_set_value(make, width,
                                                          dim_size):
    # PyG's padding aggregations fail without rows for two sets or more and
    # give a value for one: every empty set must get the value PyG gives an
    # empty set next to a non-empty one, whatever the number of sets.
    torch.manual_seed(0)
    aggr = make().eval()
    x = torch.randn(1, 4)
    beside = aggr(x, torch.tensor([0]), dim_size=2)[1]
    out = pool(x[:0], torch.zeros(0, dtype=torch.long), dim_size=dim_size,
               aggr=aggr)
    assert out.shape == (dim_size, width)
    assert torch.allclose(out, beside.expand(dim_size, width)), out
    # ptr alike.
    out_ptr = pool(x[:0], ptr=torch.zeros(dim_size + 1, dtype=torch.long),
                   aggr=aggr)
    assert torch.equal(out_ptr, out)


def test_empty_sets_without_rows_have_finite_gradients():
    aggr = A.SetTransformerAggregation(4, heads=1)
    x = torch.randn(0, 4, requires_grad=True)
    out = pool(x, torch.zeros(0, dtype=torch.long), dim_size=3, aggr=aggr)
    out.sum().backward()
    grads = [p.grad for p in aggr.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert x.grad is None or torch.equal(x.grad, torch.zeros(0, 4))


@pytest.mark.parametrize('aggr', [
    lambda: A.SortAggregation(k=2),
    lambda: A.SetTransformerAggregation(3, heads=1),
    lambda: A.GraphMultisetTransformer(3, k=2, heads=1),
    lambda: MultiAggregation(['sum', A.SortAggregation(k=2)]),
])
def test_padding_aggregations_accept_shuffled_rows(aggr):
    # They pad sets densely and need rows grouped by set; shuffled rows must
    # give the sorted rows' result (each set's rows in their old order).
    torch.manual_seed(0)
    module = aggr().eval()
    x = torch.randn(9, 3)
    index = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    expected = module(x, index, dim_size=3)
    perm = torch.tensor([4, 0, 8, 1, 5, 2, 6, 3, 7])  # rows keep set order
    out = pool(x[perm], index[perm], dim_size=3, aggr=module)
    assert torch.allclose(out, expected, atol=1e-6)


def test_resolve_aggr_accepts_strings_instances_and_lists():
    assert isinstance(resolve_aggr('sum'), SumAggregation)
    assert isinstance(resolve_aggr('add'), SumAggregation)
    inst = SumAggregation()
    assert resolve_aggr(inst) is inst
    multi = resolve_aggr(['sum', 'max'])
    assert isinstance(multi, MultiAggregation)
    x = torch.randn(4, 2)
    out = pool(x, torch.tensor([0, 0, 1, 1]), aggr=['sum', 'max'])
    assert out.shape == (2, 4)
    assert torch.allclose(out[:, :2], x.view(2, 2, 2).sum(1))
    assert torch.allclose(out[:, 2:], x.view(2, 2, 2).max(1).values)
    powermean = resolve_aggr('powermean', {'p': 2.0})
    assert float(powermean.p) == 2.0


def test_aggr_names_are_checked_at_construction():
    with pytest.raises(ValueError, match="did you mean 'sum'"):
        DeepSetsEquivariant([3, 4], aggr='summ')
    with pytest.raises(ValueError, match="did you mean 'mean'"):
        DeepSetsInvariant([3, 8], [8, 2], aggr='maen')


def test_resolve_aggr_errors():
    with pytest.raises(ValueError, match="Unknown 'aggr' 'summ'; did you "
                       "mean 'sum'") as err:
        resolve_aggr('summ')
    # The common choices come first, then the rest.
    assert "Common choices: 'sum', 'mean', 'max'" in str(err.value)
    with pytest.raises(ValueError, match="Unknown 'aggr' 'nope'"):
        resolve_aggr(['sum', 'nope'])
    with pytest.raises(TypeError, match="'aggr' must be"):
        resolve_aggr(3)
    with pytest.raises(ValueError, match='empty list'):
        resolve_aggr([])


def test_index_dtypes():
    x = torch.randn(4, 2)
    reduce = {'sum': lambda t: t.sum(1), 'mean': lambda t: t.mean(1),
              'max': lambda t: t.amax(1)}
    for dtype in (torch.int32, torch.int64):
        index = torch.tensor([0, 0, 1, 1], dtype=dtype)
        for aggr, f in reduce.items():
            out = pool(x, index, aggr=aggr)
            assert torch.allclose(out, f(x.view(2, 2, 2))), (dtype, aggr)
        # The fused mean of the model counts set sizes from the ids too.
        model = DeepSetsInvariant([2, 4], [4, 1], aggr='mean')
        expected = model.rho(model.phi(x).view(2, 2, 4).mean(1))
        assert torch.allclose(model(x, index), expected, atol=1e-6)


def test_pooled_width_matches_actual_width():
    x = torch.randn(7, 3)
    index = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    aggrs = [
        resolve_aggr('sum'),
        resolve_aggr(['sum', 'max', 'std']),
        resolve_aggr(['sum', 'max'], {'mode': 'proj', 'mode_kwargs': {
            'in_channels': 3, 'out_channels': 5}}),
        resolve_aggr(['sum', 'mean'], {'mode': 'sum'}),
        A.Set2Set(3, processing_steps=2),
        A.SortAggregation(k=2),
        resolve_aggr('quantile', {'q': [0.25, 0.5, 0.75]}),
        A.EquilibriumAggregation(3, 4, num_layers=[8]),
        A.DegreeScalerAggregation(['mean', 'max'], ['identity', 'linear'],
                                  deg=torch.tensor([1, 2, 3])),
    ]
    for aggr in aggrs:
        state = torch.get_rng_state()
        width = pooled_width(aggr, 3)
        assert torch.equal(state, torch.get_rng_state())
        assert width == aggr(x, index, dim_size=3).size(-1), aggr
    assert pooled_width(A.SumAggregation(), None) is None
    assert pooled_width(A.SumAggregation(), -1) is None


@pytest.mark.parametrize('aggr', ['min', 'max'])
@pytest.mark.parametrize('layout', ['index', 'ptr'])
def test_an_extreme_of_zero_gets_the_whole_gradient(aggr, layout,
                                                    kernel_path):
    # PyG's MinAggregation (scatter_reduce's backward) counted the zero it
    # fills the output with as a tie and gave the row half the gradient.
    phi = torch.nn.Linear(1, 1)
    with torch.no_grad():
        phi.weight.fill_(1.0)
        phi.bias.fill_(0.0)
    model = DeepSetsInvariant(phi, torch.nn.Identity(), aggr=aggr)
    x = torch.tensor([[0.0], [2.0]]) if aggr == 'min' else \
        torch.tensor([[0.0], [-2.0]])
    grouping = dict(index=torch.tensor([0, 0])) if layout == 'index' else \
        dict(ptr=torch.tensor([0, 2]))
    model(x, **grouping).sum().backward()
    assert phi.bias.grad.item() == 1.0
    assert phi.weight.grad.item() == 0.0


@pytest.mark.parametrize('aggr', ['min', 'max'])
def test_a_compiled_extreme_of_zero_gets_the_whole_gradient(aggr):
    torch._dynamo.reset()
    model = DeepSetsInvariant(torch.nn.Identity(), torch.nn.Identity(),
                              aggr=aggr)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.tensor([[0.0, 1.0], [2.0, -1.0], [0.0, 3.0]],
                     requires_grad=True)
    index = torch.tensor([0, 0, 1])
    compiled(x, index, dim_size=2).sum().backward()
    expected = x.detach().clone().requires_grad_()
    model(expected, index, dim_size=2).sum().backward()
    assert torch.equal(x.grad, expected.grad)
    assert x.grad[0, 0] == (1.0 if aggr == 'min' else 0.0)
    torch._dynamo.reset()
