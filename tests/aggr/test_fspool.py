
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import NoSync, make_batch
from tests.strategies import set_sizes
from torch_geometric.nn import SAGEConv
from torch_geometric.nn.aggr import MedianAggregation, MultiAggregation
from torch_geometric_deepsets import (
    DeepSetsEquivariant,
    DeepSetsInvariant,
    FSPool,
)
from torch_geometric_deepsets.testing import assert_permutation_invariant


def set_knots(pool, knots):
    with torch.no_grad():
        pool.weight.copy_(torch.tensor(knots, dtype=pool.weight.dtype))
    return pool


def reference(pool, x, batch, num_sets):
    r"""The paper's formula set by set: sort each feature, weight by the
    interpolated knots at relative rank j / max(n - 1, 1), sum."""
    k = pool.num_pieces
    rows = []
    for s in range(num_sets):
        xs = x[batch == s]
        n = xs.size(0)
        total = torch.zeros(x.size(1), dtype=x.dtype)
        values = xs.sort(dim=0, descending=True).values
        for j in range(n):
            r = j / max(n - 1, 1)
            i = min(int(r * k), k - 1)
            lam = r * k - i
            w = (1 - lam) * pool.weight[:, i] + lam * pool.weight[:, i + 1]
            total = total + w * values[j]
        rows.append(total)
    return torch.stack(rows)


def test_hand_computed(toy):
    x, index, ptr = toy
    pool = set_knots(FSPool(2, num_pieces=2), [[1.0, 0.0, -1.0],
                                               [2.0, 1.0, 0.0]])
    # Set 0 (r = 0, 1):      3 * 1 + 1 * -1 = 2;  0.5 * 2 + -2 * 0 = 1.
    # Set 1 (r = 0, .5, 1):  2 * 1 + 0 * 0 + -1 * -1 = 3;
    #                        4 * 2 + 2 * 1 + -3 * 0 = 10.
    # Set 2 (one element, r = 0): 5 * 1 = 5;  1 * 2 = 2.
    expected = torch.tensor([[2.0, 1.0], [3.0, 10.0], [5.0, 2.0]])
    assert torch.equal(pool(x, index), expected)
    assert torch.equal(pool(x, ptr=ptr), expected)
    perm = torch.tensor([4, 0, 5, 2, 1, 3])  # unsorted rows
    assert torch.equal(pool(x[perm], index[perm]), expected)


def test_hand_computed_between_knots():
    # Four elements and two pieces: r = 0, 1/3, 2/3, 1 fall at 0, 2/3, 4/3
    # and 2 on the knot axis, so w = 1, 1/3, -1/3, -1 for knots (1, 0, -1).
    pool = set_knots(FSPool(1, num_pieces=2), [[1.0, 0.0, -1.0]]).double()
    x = torch.tensor([[2.0], [4.0], [1.0], [3.0]], dtype=torch.float64)
    expected = 4 * 1 + 3 / 3 - 2 / 3 - 1 * 1
    assert torch.allclose(pool(x), torch.tensor([[expected]],
                                                dtype=torch.float64))


@pytest.mark.parametrize('knot,reduce', [(None, 'sum'), (0, 'max'),
                                         (6, 'min')])
def test_special_knots_are_classic_poolings(knot, reduce):
    # With k = 6, every relative rank of a set of 2, 3, 4 or 7 elements falls
    # on a knot, so a one-hot knot vector picks one order statistic.
    pool = FSPool(3, num_pieces=6)
    knots = [1.0] * 7 if knot is None else [float(i == knot)
                                             for i in range(7)]
    set_knots(pool, [knots] * 3)
    x, batch = make_batch([4, 2, 7, 3], 3, shuffle=True)
    out = pool(x, batch, dim_size=4)
    for s in range(4):
        xs = x[batch == s]
        expected = {'sum': xs.sum(0), 'max': xs.max(0).values,
                    'min': xs.min(0).values}[reduce]
        assert torch.allclose(out[s], expected, atol=1e-6)


def test_middle_knot_is_the_median_of_odd_sets():
    # k = 12: the middle rank of sets of 3, 5, 7 and 13 elements is knot 6.
    pool = set_knots(FSPool(2, num_pieces=12),
                     [[float(i == 6) for i in range(13)]] * 2)
    x, batch = make_batch([5, 3, 7, 13], 2, shuffle=True)
    expected = MedianAggregation()(x, batch, dim_size=4)
    assert torch.allclose(pool(x, batch), expected)


def test_matches_reference_on_ragged_batch():
    torch.manual_seed(1)
    pool = FSPool(3, num_pieces=5).double()
    x, batch = make_batch([6, 0, 1, 13, 2, 0], 3, dtype=torch.float64,
                          shuffle=True)
    out = pool(x, batch, dim_size=6)
    torch.testing.assert_close(out, reference(pool, x, batch, 6),
                               rtol=1e-12, atol=1e-12)
    assert torch.equal(out[1], torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize('layout', ['index', 'ptr'])
def test_float64_relative_ranks_are_computed_in_float64(layout):
    # With k = 4 pieces, sets of 4, 7 and 11 elements put their ranks at
    # 4j/3, 2j/3 and 2j/5 on the knot axis: not exact in binary, so ranks
    # computed in float32 are ~1e-8 off, which only a double-precision
    # tolerance sees (allclose's default rtol=1e-5 does not).
    pool = FSPool(2, num_pieces=4).double()
    sizes = [4, 0, 7, 1, 11]
    x, batch = make_batch(sizes, 2, dtype=torch.float64,
                          shuffle=layout == 'index')
    x = 10 * x
    if layout == 'index':
        out = pool(x, batch, dim_size=len(sizes))
    else:
        counts = torch.tensor(sizes)
        out = pool(x, ptr=torch.cat([counts.new_zeros(1), counts.cumsum(0)]))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, reference(pool, x, batch, len(sizes)),
                               rtol=1e-12, atol=1e-12)


@given(sizes=set_sizes, pieces=st.integers(1, 6), seed=st.integers(0, 999))
def test_invariance_property(sizes, pieces, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    pool = FSPool(3, num_pieces=pieces)
    x, batch = make_batch(sizes, 3, generator=gen)
    assert_permutation_invariant(pool, x, batch, dim_size=len(sizes),
                                 generator=gen)
    out = pool(x, batch, dim_size=len(sizes))
    assert torch.allclose(out, reference(pool, x, batch, len(sizes)),
                          atol=1e-5)
    for s in range(len(sizes)):  # independent of the other sets
        assert torch.allclose(out[s:s + 1], pool(x[batch == s]), atol=1e-6)


def test_empty_sets_pool_to_zero_with_finite_gradients():
    pool = FSPool(3, num_pieces=3)
    x, batch = make_batch([3, 0, 2, 0], 3)
    x.requires_grad_()
    out = pool(x, batch, dim_size=4)
    assert torch.equal(out[1], torch.zeros(3))
    assert torch.equal(out[3], torch.zeros(3))
    assert torch.equal(pool(x[:0]), torch.zeros(1, 3))
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.isfinite(pool.weight.grad).all()


@pytest.mark.parametrize('shuffle', [False, True])
def test_tied_values_take_ranks_in_row_order(shuffle):
    # Knots 4 -> 0: the weight falls linearly with the relative rank, so
    # each row's gradient is the weight of the rank it took.
    pool = set_knots(FSPool(1, num_pieces=1), [[4.0, 0.0]])
    x = torch.tensor([[1.0], [9.0], [1.0], [1.0], [2.0], [1.0], [3.0]])
    index = torch.tensor([0, 1, 1, 0, 1, 0, 1])
    # Set 0: three tied ones, ranks 0, 1/2, 1 in row order: 4, 2, 0.
    # Set 1: 9, 3, 2, 1 at ranks 0, 1/3, 2/3, 1: 4, 8/3, 4/3, 0.
    grad = torch.tensor([4.0, 4.0, 0.0, 2.0, 4 / 3, 0.0, 8 / 3])
    if shuffle:
        perm = torch.tensor([6, 3, 1, 0, 5, 4, 2])
        x, index, grad = x[perm], index[perm], grad[perm]
        grad[[1, 3, 4]] = torch.tensor([4.0, 2.0, 0.0])  # rows 3, 0, 5
    x.requires_grad_()
    out = pool(x, index)
    assert torch.allclose(out, torch.tensor([[6.0], [36 + 8 + 8 / 3]]))
    out.sum().backward()
    assert torch.allclose(x.grad.view(-1), grad)


def test_gradcheck():
    pool = FSPool(2, num_pieces=3).double()
    # Distinct values: the sort order, hence the function, is locally fixed.
    x = (torch.randperm(16, dtype=torch.float64) / 4 - 2).view(8, 2)
    x.requires_grad_()
    batch = torch.tensor([0, 0, 0, 2, 2, 3, 3, 3])

    def f(x, weight):
        return pool(x, batch, dim_size=4)

    assert torch.autograd.gradcheck(f, (x, pool.weight))
    assert torch.autograd.gradgradcheck(f, (x, pool.weight))


def test_nonfinite_stays_in_its_set():
    pool = FSPool(3, num_pieces=2)
    x, batch = make_batch([4, 3, 5], 3, shuffle=True)
    x[(batch == 1).nonzero()[0, 0], 1] = float('nan')
    out = pool(x, batch)
    assert torch.isfinite(out[[0, 2]]).all()
    keep = batch != 1
    alone = pool(x[keep], torch.tensor([0, -1, 1])[batch[keep]])
    assert torch.equal(alone, out[[0, 2]])


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16,
                                   torch.float64])
def test_dtypes(dtype):
    pool = FSPool(3, num_pieces=4)
    x, batch = make_batch([300, 1, 5], 3)
    with torch.no_grad():
        ref = pool(x, batch)
        out = pool.to(dtype)(x.to(dtype), batch)
    assert out.dtype == dtype
    # Relative ranks stay exact for long sets in low precision.
    tol = {torch.float16: 2e-2, torch.bfloat16: 5e-2, torch.float64: 1e-5}
    assert torch.allclose(out.float(), ref, rtol=tol[dtype],
                          atol=tol[dtype] * float(ref.abs().max()))


def test_in_models_and_pyg_layers():
    torch.manual_seed(0)
    x, batch = make_batch([3, 0, 4], 3)
    # As the pooling of the invariant model.
    model = DeepSetsInvariant([3, 8], [8, 2], aggr=FSPool(8, num_pieces=3))
    expected = model.rho(model.aggr_module(model.phi(x), batch, dim_size=3))
    assert torch.allclose(model(x, batch, dim_size=3), expected, atol=1e-6)
    # As the readout of the equivariant model.
    stack = DeepSetsEquivariant([3, 4], readout=FSPool(4, num_pieces=2))
    assert torch.allclose(
        stack(x, batch, dim_size=3),
        stack.readout(stack.layers[0](x, batch, dim_size=3), batch,
                      dim_size=3), atol=1e-6)
    # In a list of aggregations.
    pool = FSPool(3, num_pieces=2)
    multi = MultiAggregation([pool, 'sum'])
    out = multi(x, batch, dim_size=3)
    assert torch.allclose(out[:, :3], pool(x, batch, dim_size=3))
    assert torch.allclose(out[:, 3:], torch.stack(
        [x[batch == s].sum(0) for s in range(3)]), atol=1e-6)


def test_as_aggr_of_sage_conv():
    pool = FSPool(4, num_pieces=3)
    conv = SAGEConv(4, 6, aggr=pool)
    x = torch.randn(5, 4)
    edge_index = torch.tensor([[1, 2, 3, 4, 0, 4, 1], [0, 0, 1, 1, 2, 3, 0]])
    out = conv(x, edge_index)
    messages = pool(x[edge_index[0]], edge_index[1], dim_size=5)
    assert torch.equal(messages[4], torch.zeros(4))  # no incoming edge
    assert torch.allclose(out, conv.lin_l(messages) + conv.lin_r(x),
                          atol=1e-6)


def test_leading_dimensions():
    # PyG's Aggregation contract: [*, N, C] along dim=-2, or elements along
    # dim=0 with heads in between (GATConv's messages).
    pool = FSPool(3, num_pieces=3)
    x = torch.randn(2, 6, 3)
    index = torch.tensor([0, 2, 0, 2, 2, 0])
    out = pool(x, index)
    assert out.shape == (2, 3, 3)
    for i in range(2):
        assert torch.equal(out[i], pool(x[i], index))
    assert torch.equal(out[:, 1], torch.zeros(2, 3))
    heads = pool(x.transpose(0, 1), index, dim=0)
    assert torch.equal(heads, out.transpose(0, 1))


def test_device_path_reads_no_value():
    # What GPUs and compiled graphs run: no host read, no data-dependent
    # shape, forward and backward (meta tensors take the device path).
    pool = FSPool(3, num_pieces=4).to('meta')
    x = torch.randn(50, 3, device='meta', requires_grad=True)
    index = torch.empty(50, dtype=torch.long, device='meta')
    ptr = torch.empty(7, dtype=torch.long, device='meta')
    with NoSync():
        pool(x, index, dim_size=6).sum().backward()
        pool(x, ptr=ptr).sum().backward()
    assert x.grad.shape == x.shape


def test_repr():
    pool = FSPool(3, num_pieces=4)
    assert str(pool) == 'FSPool(3, num_pieces=4)'
    assert pool.weight.shape == (3, 5)


def test_bad_input():
    with pytest.raises(ValueError, match="'num_pieces' must be a positive"):
        FSPool(3, num_pieces=0)
    with pytest.raises(ValueError, match="'in_channels' must be a positive"):
        FSPool(0, num_pieces=2)
    pool = FSPool(3, num_pieces=2)
    with pytest.raises(ValueError, match="'x' has 4 features per element but "
                       "the model expects 3"):
        pool(torch.randn(5, 4))
    with pytest.raises(ValueError, match="'x' must have a feature "
                       "dimension"):
        pool(torch.randn(5))
    with pytest.raises(ValueError,
                       match="'index' has 3 entries but 'x' has 4"):
        pool(torch.randn(4, 3), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match=r"ids in \[0, 2\] but 'dim_size' "
                       "is 2"):
        pool(torch.randn(4, 3), torch.tensor([0, 0, 1, 2]), dim_size=2)
    with pytest.raises(ValueError, match="'ptr' must start at 0 and end at"):
        pool(torch.randn(4, 3), ptr=torch.tensor([0, 2, 3]))
    with pytest.raises(TypeError, match="'x' must be a torch.Tensor"):
        pool([[1.0, 2.0, 3.0]])
    with pytest.raises(TypeError, match="'x' is torch.float64 but the "
                       "model's parameters are torch.float32"):
        pool(torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="'dim' is 1 but 'x' has shape"):
        pool(torch.randn(4, 3), dim=1)
