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
