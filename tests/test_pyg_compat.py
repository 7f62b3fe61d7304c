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
