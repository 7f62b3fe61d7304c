r"""The weighted forms of PyG's aggregations: integer weights equal repeated
rows (values and gradients, in float64), real weights extend the formulas,
and the aggregations without a weighted form refuse by name."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import make_batch
from tests.strategies import set_sizes
from torch_geometric.nn.aggr import (
    MaxAggregation,
    MeanAggregation,
    MinAggregation,
    PowerMeanAggregation,
    SoftmaxAggregation,
    StdAggregation,
    SumAggregation,
    VarAggregation,
)
from torch_geometric_deepsets import (
    DeepSetsInvariant,
    FSPool,
    JanossyPooling,
    pool,
)

WEIGHTED = {
    'sum': SumAggregation,
    'mean': MeanAggregation,
    'max': MaxAggregation,
    'min': MinAggregation,
    'var': VarAggregation,
    'std': StdAggregation,
    'var_semi': lambda: VarAggregation(semi_grad=True),
    'softmax': lambda: SoftmaxAggregation(t=0.7),
    'softmax_learn': lambda: SoftmaxAggregation(learn=True, channels=3),
    'powermean': lambda: PowerMeanAggregation(p=2.0),
    'powermean_learn': lambda: PowerMeanAggregation(learn=True),
    'list': lambda: ['sum', MaxAggregation(), StdAggregation()],
}


def repeated(x, batch, counts):
    r"""Every row of x repeated as often as its integer weight says."""
    rows = torch.repeat_interleave(torch.arange(x.size(0)), counts)
    return x[rows], batch[rows]


@pytest.mark.parametrize('name', list(WEIGHTED))
@given(sizes=set_sizes, seed=st.integers(0, 2**16))
def test_integer_weights_are_copies_of_rows(name, sizes, seed):
    gen = torch.Generator().manual_seed(seed)
    x, batch = make_batch(sizes, 3, torch.float64, shuffle=True,
                          generator=gen)
    # Positive inputs for the power mean (PyG clamps and takes roots).
    x = x.abs() + 0.1 if name.startswith('powermean') else x
    counts = torch.randint(0, 4, (x.size(0), ), generator=gen)
    aggr = WEIGHTED[name]()
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    xr, br = repeated(x2, batch, counts)
    dim_size = len(sizes)
    out = pool(x1, batch, dim_size=dim_size, aggr=aggr, weight=counts)
    expected = pool(xr, br, dim_size=dim_size, aggr=aggr)
    assert torch.allclose(out, expected, atol=1e-10)
    # Gradients: rows of weight k get k times a copy's gradient (none for
    # weight 0), as the copies' gradients add up.
    gen_out = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    (out * gen_out).sum().backward()
    (expected * gen_out).sum().backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-9)


@pytest.mark.parametrize('name', ['mean', 'max', 'var', 'softmax',
                                  'powermean'])
def test_scaled_weights_give_the_same_normalised_pooling(name):
    x, batch = make_batch([3, 1, 4], 3, torch.float64)
    x = x.abs() + 0.1
    w = torch.rand(x.size(0), dtype=torch.float64) + 0.1
    aggr = WEIGHTED[name]()
    a = pool(x, batch, aggr=aggr, weight=w)
    b = pool(x, batch, aggr=aggr, weight=7.5 * w)
    assert torch.allclose(a, b, atol=1e-12)


def test_softmax_by_hand():
    x = torch.tensor([[1.0], [2.0], [0.5]], dtype=torch.float64)
    w = torch.tensor([1.0, 2.5, 0.0], dtype=torch.float64)
    out = pool(x, aggr=SoftmaxAggregation(t=1.0), weight=w)
    e = w * torch.exp(x.view(-1))
    assert torch.allclose(out.view(-1), (e * x.view(-1)).sum() / e.sum())


@pytest.mark.parametrize('aggr', ['sum', 'mean', 'max', 'min', 'var',
                                  'softmax'])
def test_all_zero_weights_give_the_empty_set_value(aggr):
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    batch = torch.tensor([0, 0, 1, 1])
    w = torch.tensor([0.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    out = pool(x, batch, dim_size=3, aggr=aggr, weight=w)
    empty = pool(x[2:], batch[2:], dim_size=3, aggr=aggr, weight=w[2:])
    assert torch.allclose(out, empty, atol=1e-12)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[:2] == 0).all()


@pytest.mark.parametrize('aggr,kwargs,name', [
    ('median', {}, 'MedianAggregation'),
    ('quantile', {'q': 0.3}, 'QuantileAggregation'),
    ('sort', {'k': 2}, 'SortAggregation'),
    ('lstm', {'in_channels': 3, 'out_channels': 3}, 'LSTMAggregation'),
    ('set_transformer', {'channels': 3, 'num_seed_points': 1},
     'SetTransformerAggregation'),
    ('mul', {}, 'MulAggregation'),
])
def test_aggregations_without_a_weighted_form_refuse_by_name(aggr, kwargs,
                                                             name):
    x, batch = make_batch([2, 3], 3)
    model = DeepSetsInvariant([3, 3], [3 * (2 if aggr == 'sort' else 1), 1],
                              aggr=aggr, aggr_kwargs=kwargs)
    with pytest.raises(ValueError, match=f"^{name} takes no 'weight': .*"
                       f"Weighted poolings: 'sum', 'mean'"):
        model(x, batch, weight=torch.ones(5))
    with pytest.raises(ValueError, match=f"^{name} takes no 'weight'"):
        pool(x, batch, aggr=model.aggr_module, weight=torch.ones(5))


def test_package_aggregations_without_weights_refuse_by_name():
    x, batch = make_batch([2, 3], 3)
    for module, why in ((FSPool(3, 4), 'ranks of the values'),
                        (JanossyPooling([3, 8], [8, 1], k=2),
                         'tuples .or orderings. of distinct elements')):
        name = type(module).__name__
        with pytest.raises(ValueError, match=f"^{name} takes no 'weight': "
                           f".*{why}"):
            module(x, batch, weight=torch.ones(5))
        with pytest.raises(ValueError, match=f"^{name} takes no 'weight'"):
            DeepSetsInvariant([3, 3], [3 if name == 'FSPool' else 1, 1],
                              aggr=module)(x, batch, weight=torch.ones(5))


def test_a_nested_model_takes_the_weights():
    x, batch = make_batch([2, 3, 0], 3, torch.float64)
    counts = torch.tensor([1, 2, 0, 3, 1])
    inner = DeepSetsInvariant([3, 4], [4, 2]).double()
    outer = DeepSetsInvariant([3, 3], [5, 1],
                              aggr=['sum', inner]).double()
    xr, br = repeated(x, batch, counts)
    assert torch.allclose(outer(x, batch, dim_size=3, weight=counts),
                          outer(xr, br, dim_size=3), atol=1e-12)
