r"""What PyG's own tests expect of an aggregation, pinned for ours.

PyG's test files for aggregations, :class:`SAGEConv`, :class:`GraphConv`,
:class:`GINConv`, :class:`MultiAggregation` and global pooling were run with
:class:`DeepSetsInvariant` (and :func:`pool`) standing in for PyG's classes
(issue 11). Each test here covers one way in which ours behaved differently,
compared against PyG's own aggregation.
"""
import pytest
import torch

from torch_geometric.nn import aggr as A
from torch_geometric_deepsets import DeepSetsInvariant, pool


def stand_in(aggr):
    r"""Our model in place of PyG's :obj:`aggr`: nothing but the pooling."""
    return DeepSetsInvariant(torch.nn.Identity(), torch.nn.Identity(),
                             aggr=aggr)


@pytest.mark.parametrize('aggr', [
    A.SumAggregation, A.MeanAggregation, A.MaxAggregation,
    A.SoftmaxAggregation, A.MulAggregation,
])
def test_dim_size_without_index_adds_empty_sets(aggr):
    # PyG puts all rows in set 0; sets 1 .. dim_size - 1 are empty.
    x = torch.randn(5, 3)
    expected = aggr()(x, dim_size=3)
    assert expected.shape == (3, 3)
    assert torch.equal(stand_in(aggr())(x, dim_size=3), expected)
    assert torch.equal(pool(x, dim_size=3, aggr=aggr()), expected)


def test_dim_size_without_index_gives_empty_sets_their_value():
    model = DeepSetsInvariant(phi=[3, 8], rho=[8, 4, 2])
    x = torch.randn(5, 3)
    out = model(x, dim_size=3)
    assert torch.allclose(out[:1], model(x), atol=1e-6)
    empty = model(x[:0], torch.zeros(0, dtype=torch.long), dim_size=2)
    assert torch.allclose(out[1:], empty, atol=1e-6)


def test_rows_need_set_zero_without_index():
    with pytest.raises(ValueError, match="'dim_size' is 0 .* 5 rows"):
        pool(torch.randn(5, 3), dim_size=0)
    assert pool(torch.randn(0, 3), dim_size=0).shape == (0, 3)


@pytest.mark.parametrize('aggr', [
    A.SumAggregation, A.MeanAggregation, A.MaxAggregation,
    A.MedianAggregation, A.SoftmaxAggregation, A.StdAggregation,
])
def test_pooling_along_the_last_dimension(aggr):
    # PyG's aggregations reduce along any dimension, the last one included
    # (its quantile tests reduce a [10, 3] input along dim=1).
    x = torch.randn(4, 5)
    index = torch.tensor([0, 1, 0, 2, 1])
    expected = aggr()(x, index, dim=-1)
    assert expected.shape == (4, 3)
    assert torch.allclose(pool(x, index, dim=1, aggr=aggr()), expected)
    assert torch.allclose(stand_in(aggr())(x, index, dim=-1), expected)


def test_pooling_along_the_last_dimension_after_phi():
    # phi keeps the width here, so the elements along the last dimension
    # stay where they were; pooling must not move in front of its affine
    # last layer, which mixes exactly that dimension.
    phi = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(5, 5))
    model = DeepSetsInvariant(phi, torch.nn.Identity(), aggr='sum')
    x = torch.randn(4, 5)
    index = torch.tensor([0, 1, 0, 2, 1])
    expected = A.SumAggregation()(phi(x), index, dim=-1)
    assert torch.allclose(model(x, index, dim=-1), expected, atol=1e-6)


def test_a_phi_that_reads_the_features_keeps_them_off_the_set_dimension():
    model = DeepSetsInvariant(phi=[3, 8], rho=[8, 2])
    with pytest.raises(ValueError, match="'dim' is 1 but 'x' has shape"):
        model(torch.randn(4, 3), dim=1)


@pytest.mark.parametrize('layout', ['leading', 'middle', 'trailing'])
@pytest.mark.parametrize('q', [0.5, [0.25, 0.75]])
def test_quantile_empty_sets_take_the_fill_value(layout, q):
    # PyG gives an empty set the fill_value (its quantile tests pad with
    # 10.0), except that it fails on an empty set before the first
    # non-empty one; that set gets the fill_value too, so a set's result
    # never depends on where it stands in the batch.
    aggr = A.QuantileAggregation(q, fill_value=10.0)
    x = torch.randn(5, 3)
    index = {'leading': [1, 1, 2, 2, 2], 'middle': [0, 0, 2, 2, 2],
             'trailing': [0, 0, 1, 1, 1]}[layout]
    index = torch.tensor(index)
    empty = {'leading': 0, 'middle': 1, 'trailing': 2}[layout]
    out = pool(x, index, dim_size=3, aggr=aggr)
    assert torch.equal(out[empty], torch.full_like(out[empty], 10.0))
    for s in range(3):
        if s != empty:
            assert torch.equal(out[s:s + 1], pool(x[index == s], aggr=aggr))
    if layout != 'leading':
        assert torch.equal(out, aggr(x, index, dim_size=3))
    assert torch.equal(stand_in(aggr)(x, index, dim_size=3), out)


def test_quantile_after_fewer_than_two_rows_gives_the_fill_value():
    # PyG fails on these too.
    aggr = A.QuantileAggregation([0.25, 0.75], fill_value=-1.0)
    out = pool(torch.randn(0, 3), torch.zeros(0, dtype=torch.long),
               dim_size=2, aggr=aggr)
    assert torch.equal(out, torch.full((2, 6), -1.0))
    x = torch.randn(1, 3)
    out = pool(x, torch.zeros(1, dtype=torch.long), dim_size=2, aggr=aggr)
    assert torch.equal(out[0], x[0].repeat(2))
    assert torch.equal(out[1], torch.full((6, ), -1.0))


def test_quantile_along_the_last_dimension_pads_with_the_fill_value():
    aggr = A.QuantileAggregation(0.5, fill_value=10.0)
    x = torch.randn(4, 3)
    index = torch.zeros(3, dtype=torch.long)
    expected = aggr(x, index, dim=1, dim_size=5)
    assert torch.equal(expected[:, 1:], torch.full((4, 4), 10.0))
    assert torch.equal(pool(x, index, dim_size=5, dim=1, aggr=aggr),
                       expected)


@pytest.mark.parametrize('aggr', [
    lambda: A.LSTMAggregation(3, 4),
    lambda: A.SortAggregation(k=3),
    lambda: A.GRUAggregation(3, 4),
])
def test_max_num_elements_reaches_the_aggregation(aggr):
    # PyG's padding aggregations keep the first max_num_elements rows of
    # each set when it is given to the call.
    torch.manual_seed(0)
    pyg = aggr()
    x = torch.randn(6, 3)
    index = torch.tensor([0, 0, 0, 0, 1, 1])
    expected = pyg(x, index, max_num_elements=2)
    assert not torch.allclose(expected, pyg(x, index))
    out = stand_in(pyg)(x, index, max_num_elements=2)
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize('aggr', ['softmax', 'std', 'min'])
def test_ptr_along_any_dimension_without_torch_scatter(aggr, monkeypatch):
    # PyG reduces over ptr along a dimension other than the first only
    # with torch-scatter (an optional package); the set id of every row
    # gives the same result without it.
    import torch_geometric.typing
    monkeypatch.setattr(torch_geometric.typing, 'WITH_TORCH_SCATTER', False)
    x = torch.randn(2, 6, 3)
    ptr = torch.tensor([0, 2, 5, 5, 6])
    expected = pool(x, torch.tensor([0, 0, 1, 1, 1, 3]), dim_size=4,
                    aggr=aggr)
    assert torch.allclose(pool(x, ptr=ptr, aggr=aggr), expected, atol=1e-6)
    assert torch.allclose(pool(x.transpose(0, 1), ptr=ptr, aggr=aggr, dim=0),
                          expected.transpose(0, 1), atol=1e-6)
