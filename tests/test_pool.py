import importlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import torch_geometric
from tests.conftest import AGGRS, make_batch
from tests.strategies import set_sizes
from torch_geometric.nn.aggr import MultiAggregation, SumAggregation
from torch_geometric_deepsets import pool, resolve_aggr
from torch_geometric_deepsets.pool import check_sets


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


def test_resolve_aggr_errors():
    with pytest.raises(ValueError, match="Unknown 'aggr' 'nope'"):
        resolve_aggr('nope')
    with pytest.raises(TypeError, match="'aggr' must be"):
        resolve_aggr(3)
    with pytest.raises(ValueError, match='empty list'):
        resolve_aggr([])


def test_bad_grouping_messages():
    x = torch.randn(5, 2)
    with pytest.raises(ValueError,
                       match="'batch' has 4 entries but 'x' has 5"):
        check_sets(x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="'batch' must be an integer tensor"):
        check_sets(x, torch.zeros(5))
    with pytest.raises(TypeError, match="'ptr' must be an integer tensor"):
        check_sets(x, ptr=torch.tensor([0.0, 5.0]))
    with pytest.raises(TypeError, match="'batch' must be a torch.Tensor"):
        check_sets(x, [0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"end at the number of rows .*5"):
        check_sets(x, ptr=torch.tensor([0, 2, 4]))
    with pytest.raises(ValueError, match='start at 0'):
        check_sets(x, ptr=torch.tensor([1, 2, 5]))
    with pytest.raises(ValueError, match='non-decreasing'):
        check_sets(x, ptr=torch.tensor([0, 3, 2, 5]))
    with pytest.raises(ValueError, match="'dim_size' is 2 but 'ptr' has 4"):
        check_sets(x, ptr=torch.tensor([0, 2, 4, 5]), dim_size=2)
    with pytest.raises(ValueError,
                       match=r"ids in \[0, 3\] but 'dim_size' is 2"):
        check_sets(x, torch.tensor([0, 1, 3, 1, 0]), dim_size=2)
    with pytest.raises(ValueError, match=r"ids in \[-1, 1\]"):
        check_sets(x, torch.tensor([0, 1, -1, 1, 0]), dim_size=2)
    with pytest.raises(ValueError, match='describe different sets'):
        check_sets(x, torch.tensor([0, 0, 0, 1, 1]),
                   ptr=torch.tensor([0, 2, 5]))
    with pytest.raises(ValueError, match='one-dimensional'):
        check_sets(x, torch.zeros(5, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="'dim_size' must be an int"):
        check_sets(x, torch.zeros(5, dtype=torch.long), dim_size=2.0)
    with pytest.raises(ValueError, match="all rows form one set"):
        check_sets(x, dim_size=3)


def test_value_checks_are_skipped_off_cpu_unless_debug(monkeypatch):
    pool_module = importlib.import_module('torch_geometric_deepsets.pool')
    x = torch.randn(5, 2)
    bad_ptr = torch.tensor([0, 2, 4])
    # Pretend the tensors live on a GPU: reading their values would sync.
    monkeypatch.setattr(pool_module, '_value_checks_enabled',
                        lambda t: torch_geometric.is_debug_enabled())
    check_sets(x, ptr=bad_ptr)  # not checked: would force a device sync
    with torch_geometric.debug():
        with pytest.raises(ValueError, match='end at the number of rows'):
            check_sets(x, ptr=bad_ptr)


def test_index_dtypes():
    x = torch.randn(4, 2)
    for dtype in (torch.int32, torch.int64):
        out = pool(x, torch.tensor([0, 0, 1, 1], dtype=dtype))
        assert torch.allclose(out, x.view(2, 2, 2).sum(1))


def test_pooled_channels_matches_actual_width():
    from torch_geometric.nn.aggr import (
        DegreeScalerAggregation,
        EquilibriumAggregation,
        Set2Set,
        SortAggregation,
    )
    from torch_geometric_deepsets.pool import pooled_channels
    x = torch.randn(7, 3)
    index = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    aggrs = [
        resolve_aggr('sum'),
        resolve_aggr(['sum', 'max', 'std']),
        resolve_aggr(['sum', 'max'], {'mode': 'proj', 'mode_kwargs': {
            'in_channels': 3, 'out_channels': 5}}),
        resolve_aggr(['sum', 'mean'], {'mode': 'sum'}),
        Set2Set(3, processing_steps=2),
        SortAggregation(k=2),
        resolve_aggr('quantile', {'q': [0.25, 0.5, 0.75]}),
        EquilibriumAggregation(3, 4, num_layers=[8]),
        DegreeScalerAggregation(['mean', 'max'], ['identity', 'linear'],
                                deg=torch.tensor([1, 2, 3])),
    ]
    for aggr in aggrs:
        out = aggr(x, index, dim_size=3)
        assert pooled_channels(aggr, 3) == out.size(-1), aggr
