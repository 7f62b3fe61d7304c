r"""PyG and PyTorch behaviour the package relies on or works around, pinned:
when a release changes one of these, a test here says which code to
revisit."""
import inspect

import pytest
import torch

import torch_geometric.nn.aggr as A
from torch_geometric.nn import MLP
from torch_geometric_deepsets.pool import SORTED_INPUT


def _pyg_aggregations():
    for name in A.__all__:
        cls = getattr(A, name)
        if isinstance(cls, type) and issubclass(cls, A.Aggregation) \
                and cls is not A.Aggregation:
            yield cls


def test_sorted_input_lists_every_aggregation_that_pads_sets():
    # apply_aggr sorts rows for these: they pad sets densely through
    # Aggregation.to_dense_batch, which needs rows grouped by set.
    pads = {cls for cls in _pyg_aggregations()
            if 'to_dense_batch' in inspect.getsource(cls.forward)}
    assert pads == set(SORTED_INPUT)


@pytest.mark.parametrize('aggr', [
    lambda: A.SortAggregation(k=2),
    lambda: A.SetTransformerAggregation(3, heads=1),
    lambda: A.LSTMAggregation(3, 3),
])
def test_padding_aggregations_reject_unsorted_rows(aggr):
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match='not sorted'):
        aggr()(x, torch.tensor([1, 0, 1, 0]))


@pytest.mark.parametrize('aggr', [
    lambda: A.SortAggregation(k=2),
    lambda: A.SetTransformerAggregation(3, heads=1),
    lambda: A.GraphMultisetTransformer(3, k=2, heads=1),
])
def test_padding_aggregations_fail_without_rows_for_two_sets(aggr):
    # ... while one set gets a value (or fails too): apply_aggr runs input
    # without rows with an extra set of one row in front, so that an empty
    # set's value does not depend on the number of sets.
    with pytest.raises(RuntimeError):
        aggr()(torch.randn(0, 3), torch.zeros(0, dtype=torch.long),
               dim_size=2)


def test_quantiles_fail_on_an_empty_set_before_the_first_row():
    # pool._with_leading_set puts a set of two rows in front of all others;
    # PyG gives the other empty sets the fill_value (pinned in
    # test_pyg_compat.py).
    x = torch.randn(4, 2)
    with pytest.raises(IndexError):
        A.MedianAggregation()(x, torch.tensor([1, 1, 2, 2]), dim_size=3)
    with pytest.raises(IndexError):
        A.MedianAggregation()(x[:1], torch.tensor([0]), dim_size=2)


def test_mlp_passes_the_batch_vector_to_norms_that_take_it():
    # models._utils.run passes the set of every element only when PyG's MLP
    # will hand it on.
    assert MLP([3, 4, 2], norm='graph_norm').supports_norm_batch
    assert MLP([3, 4, 2], norm='layer_norm',
               norm_kwargs={'mode': 'graph'}).supports_norm_batch
    assert not MLP([3, 4, 2], norm=None).supports_norm_batch
    assert not MLP([3, 4, 2], norm='batch_norm').supports_norm_batch


def test_torch_segment_max_backward_mis_splits_negative_gradients():
    # PyG's max over ptr backpropagates through this; at ties it divides
    # only positive gradients by the tie count. The package's max (an even
    # split, like torch.amax) therefore never uses it.
    x = torch.zeros(2, 1, requires_grad=True)
    out = torch._segment_reduce(x, 'max', offsets=torch.tensor([0, 2]))
    out.backward(torch.tensor([[-1.0]]))
    assert torch.equal(x.grad, torch.tensor([[-1.0], [-1.0]]))
    expected = torch.autograd.grad(x.amax(0), x, torch.tensor([-1.0]))[0]
    assert torch.equal(expected, torch.tensor([[-0.5], [-0.5]]))
