r"""SetAccumulator: the pooled state of chunks equals pooling all rows (with
phi, before its last affine layer), resets, keeps float32 accuracy, and
refuses a phi that normalises over rows."""
import pytest
import torch

from tests.streaming import (
    TOL,
    assert_close,
    chunkings,
    make_model,
    make_sets,
    streamed,
    whole,
)
from torch_geometric_deepsets import (
    DeepSetsInvariant,
    SetAccumulator,
    pool,
    stream_encode,
)


@pytest.mark.parametrize('aggr', ['sum', 'mean'])
def test_pooling_moves_in_front_of_the_last_affine_layer(aggr):
    for phi in ([3, 16, 8], torch.nn.Sequential(
            torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))):
        model = DeepSetsInvariant(phi, [8, 2], aggr=aggr).double()
        acc = SetAccumulator(model.aggr_module, phi=model.phi)
        assert acc.lin is not None  # the state holds phi's hidden rows
        assert acc.element_rows(torch.randn(4, 3).double()).size(-1) == 16
        x, batch = make_sets(torch.float64)
        target = torch.randn(7, 2, dtype=torch.float64)
        out, grads = whole(model, x, batch, 7, target)
        s_out, s_grads = streamed(model, chunkings(x, batch)['shuffled'], 7,
                                  target)
        assert_close(s_out, out, torch.float64)
        for key in grads:
            assert_close(s_grads[key], grads[key], torch.float64)



def test_accumulator_equals_pool_and_resets():
    x, batch = make_sets(torch.float32)
    for aggr in ['sum', 'mean', 'max', 'min', 'var', 'std', 'softmax',
                 'powermean', ['mean', 'max']]:
        acc = SetAccumulator(aggr, dim_size=7)
        for chunk in chunkings(x, batch)['spread']:
            acc.update(*chunk)
        expected = pool(x, batch, dim_size=7, aggr=aggr)
        torch.testing.assert_close(acc.compute(), expected, **TOL[
            torch.float32])
        acc.reset()
        acc.update(x[:3], torch.zeros(3, dtype=torch.long))
        assert acc.compute().shape == (7, expected.size(-1))
    assert repr(SetAccumulator('max', dim_size=3)) == \
        'SetAccumulator(aggr=MaxAggregation(), num_sets=3)'



def test_accumulator_with_phi_equals_the_model_pooling():
    model = make_model('softmax', torch.float64)
    x, batch = make_sets(torch.float64)
    acc = SetAccumulator(model.aggr_module, phi=model.phi, dim_size=7)
    for chunk in chunkings(x, batch)['single_rows']:
        acc.update(*chunk)
    expected = pool(model.phi(x), batch, dim_size=7,
                    aggr=model.aggr_module)
    assert_close(acc.compute(), expected, torch.float64)



def test_long_float32_set_keeps_float32_accuracy():
    # 2^20 rows near 1000 in chunks: a float32 running sum drifts by ~1 %.
    x = torch.full((2**20, 1), 1000.0) + torch.rand(2**20, 1)
    acc = SetAccumulator('sum')
    for chunk in x.split(2**16):
        acc.update(chunk)
    exact = x.double().sum()
    assert abs(float(acc.compute()) - float(exact)) / float(exact) < 1e-6



def test_phi_normalising_over_rows_is_refused():
    model = DeepSetsInvariant([3, 8, 8], [8, 1], norm='graph_norm')
    with pytest.raises(ValueError, match="'phi' with GraphNorm"):
        stream_encode(model, [torch.randn(4, 3)])
    phi = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8))
    model = DeepSetsInvariant(phi, [8, 1])
    with pytest.raises(ValueError, match='BatchNorm1d in training mode'):
        stream_encode(model, [torch.randn(4, 3)])
    phi.eval()  # per-row in eval mode: allowed
    expected = model(torch.randn(4, 3))
    assert stream_encode(model, [torch.randn(4, 3)]).shape == expected.shape
