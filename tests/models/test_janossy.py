import itertools
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import AGGRS, NoSync, make_batch
from tests.strategies import set_sizes
from torch_geometric.nn import SAGEConv
from torch_geometric_deepsets import (
    DeepSetsInvariant,
    JanossyPiSGD,
    JanossyPooling,
)
from torch_geometric_deepsets.models.tuples import (
    num_tuples,
)
from torch_geometric_deepsets.testing import (
    RELATIVE_TOLERANCES,
    assert_permutation_invariant,
    permutation_error,
    relative_error,
)


class AbsDiff(torch.nn.Module):
    r""":math:`|a_0 - b_0|` of a pair :math:`(a, b)` of 2-d elements."""
    def forward(self, t):
        return (t[:, :1] - t[:, 2:3]).abs()


def tuples_by_hand(xs, k):
    r"""The ordered tuples of one set as the paper defines them (with zero
    padding for sets smaller than k)."""
    n = xs.size(0)
    if n == 0:
        return []
    pad = [torch.zeros_like(xs[0])] * max(k - n, 0)
    return [torch.cat([xs[i] for i in p] + pad)
            for p in itertools.permutations(range(n), min(n, k))]


def reference(model, x, batch, num_sets, reduce='mean'):
    rows = []
    for s in range(num_sets):
        tuples = tuples_by_hand(x[batch == s], model.k)
        if not tuples:
            rows.append(torch.zeros(model.rho_in, dtype=x.dtype))
            continue
        h = model.phi(torch.stack(tuples))
        rows.append(h.mean(0) if reduce == 'mean' else
                    h.sum(0) if reduce == 'sum' else h.max(0).values)
    return model.rho(torch.stack(rows))


def janossy(phi, rho, **kwargs):
    model = JanossyPooling(phi, rho, **kwargs)
    model.rho_in = rho[0] if isinstance(rho, list) else None
    return model


def test_hand_computed_pairs(toy):
    x, index, ptr = toy
    model = JanossyPooling(AbsDiff(), torch.nn.Identity(), k=2)
    # Feature 0 per set: {1, 3}, {-1, 2, 0}, {5}. Mean |a - b| over ordered
    # pairs: 2; (3 + 1 + 2) / 3 = 2; the singleton pairs with a zero: 5.
    expected = torch.tensor([[2.0], [2.0], [5.0]])
    assert torch.equal(model(x, index), expected)
    assert torch.equal(model(x, ptr=ptr), expected)
    summed = JanossyPooling(AbsDiff(), torch.nn.Identity(), k=2, aggr='sum')
    assert torch.equal(summed(x, index), torch.tensor([[4.0], [12.0], [5.0]]))


@pytest.mark.parametrize('k', [1, 2, 3])
@pytest.mark.parametrize('aggr', AGGRS)
def test_matches_reference(k, aggr):
    torch.manual_seed(k)
    model = janossy([3, 8, 4], [4, 8, 2], k=k, aggr=aggr).double()
    x, batch = make_batch([4, 0, 1, 2, 5], 3, dtype=torch.float64,
                          shuffle=True)
    out = model(x, batch, dim_size=5)
    assert torch.allclose(out, reference(model, x, batch, 5, aggr),
                          atol=1e-12)
    # The empty set gives rho(0).
    assert torch.allclose(out[1], model.rho(torch.zeros(1, 4,
                                                        dtype=x.dtype))[0])


@pytest.mark.parametrize('tuples', ['permutations', 'combinations'])
@pytest.mark.parametrize('channels', [1, 3, 16, 40])
def test_narrow_and_wide_rows(tuples, channels):
    # Rows of fewer than 16 features are gathered value by value, wider
    # ones row by row: both give every tuple's features and gradients.
    torch.manual_seed(channels)
    model = JanossyPooling(torch.nn.Linear(3 * channels, 4),
                           torch.nn.Identity(), k=3, tuples=tuples,
                           aggr='sum').double()
    x, batch = make_batch([4, 0, 2, 3], channels, dtype=torch.float64,
                          shuffle=True)
    x.requires_grad_()
    by_hand = tuples_by_hand if tuples == 'permutations' else subsets_by_hand
    expected = torch.stack([
        model.phi(torch.stack(by_hand(x[batch == s], 3))).sum(0)
        if (batch == s).any() else torch.zeros(4, dtype=x.dtype)
        for s in range(4)])
    out = model(x, batch, dim_size=4)
    assert torch.allclose(out, expected, atol=1e-12)
    grad, = torch.autograd.grad(out.square().sum(), x)
    expected_grad, = torch.autograd.grad(expected.square().sum(), x)
    assert torch.allclose(grad, expected_grad, atol=1e-12)


@pytest.mark.parametrize('aggr', AGGRS)
def test_k1_is_deep_sets(aggr):
    model = JanossyPooling([3, 8, 8], [8, 2], k=1, aggr=aggr)
    deep_sets = DeepSetsInvariant(model.phi, model.rho, aggr=aggr)
    x, batch = make_batch([3, 0, 1, 6], 3, shuffle=True)
    assert torch.allclose(model(x, batch, dim_size=4),
                          deep_sets(x, batch, dim_size=4), atol=1e-6)


def test_phi_sees_only_within_set_tuples():
    # A phi that ends in an activation runs on the tuples as they are.
    phi = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
    model = JanossyPooling(phi, [4, 1], k=2)
    seen = []
    model.phi.register_forward_hook(lambda m, i, o: seen.append(i[0].size(0)))
    x, batch = make_batch([30, 1, 0, 20], 2)
    model(x, batch, dim_size=4)
    # sum n (n - 1) for n >= 2, one padded tuple for the singleton; a full
    # N x N pairing would be 51^2 = 2601.
    assert seen == [30 * 29 + 1 + 20 * 19]


@given(sizes=set_sizes, k=st.integers(1, 3), aggr=st.sampled_from(AGGRS),
       seed=st.integers(0, 999))
def test_invariance_property(sizes, k, aggr, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, batch = make_batch(sizes, 2, generator=gen)
    model = JanossyPooling([2, 8, 4], [4, 2], k=k, aggr=aggr)
    assert_permutation_invariant(model, x, batch, dim_size=len(sizes),
                                 generator=gen)
    out = model(x, batch, dim_size=len(sizes))
    for s in range(len(sizes)):  # independent of the other sets
        assert torch.allclose(out[s:s + 1], model(x[batch == s]), atol=1e-5)


def test_gradients_and_gradcheck():
    torch.manual_seed(0)
    model = JanossyPooling([3, 4, 4], [4, 2], k=2, act='tanh').double()
    x = (torch.randperm(21, dtype=torch.float64) / 8 - 1.25).view(7, 3)
    x.requires_grad_()
    batch = torch.tensor([0, 0, 0, 2, 2, 3, 3])  # set 1 is empty
    params = tuple(model.parameters())

    def f(x, *weights):
        return model(x, batch, dim_size=4)

    assert torch.autograd.gradcheck(f, (x, ) + params, atol=1e-6)
    assert torch.autograd.gradgradcheck(lambda t: f(t), (x, ), atol=1e-6)
    out = f(x)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_tuple_budget():
    model = JanossyPooling([2, 4], [4, 1], k=2, max_tuples=100)
    x, batch = make_batch([10, 3], 2)
    model(x, batch)  # 90 + 6 tuples fit
    x, batch = make_batch([11, 3], 2)
    message = ("Janossy pooling with k=2 needs 116 tuples for this batch "
               "(the largest set has 11 elements and 110 tuples), above "
               "'max_tuples'=100. The cost grows as n^k per set")
    with pytest.raises(ValueError, match=re.escape(message)):
        model(x, batch)
    # Counts far beyond int64 saturate instead of wrapping around.
    huge = JanossyPooling([1, 4], [4, 1], k=40, max_tuples=2**31)
    with pytest.raises(ValueError, match=f"needs {math.perm(50, 40):,} "
                       "tuples"):
        huge(torch.randn(50, 1))
    with pytest.raises(ValueError, match="'max_tuples' must be an int in"):
        JanossyPooling([2, 4], [4, 1], max_tuples=2**40)


@pytest.mark.parametrize('layout', ['index', 'ptr'])
@pytest.mark.parametrize('tuples,count', [('permutations', 110),
                                          ('combinations', 55)])
def test_tuple_budget_of_one_set_alone(layout, tuples, count):
    # One set of 11 elements has 11 * 10 = 110 pairs, or C(11, 2) = 55
    # subsets: exactly at the budget it runs (and sees all its tuples), one
    # tuple over it raises. A count capped at the budget instead of one
    # above it would let 110 pass as 109.
    x, index = torch.randn(11, 2), torch.zeros(11, dtype=torch.long)
    grouping = dict(index=index) if layout == 'index' else dict(
        ptr=torch.tensor([0, 11]))
    at = JanossyPooling([2, 4], [4, 1], k=2, max_tuples=count,
                        tuples=tuples)
    expected = reference(at, x, index, 1) if tuples == 'permutations' else \
        at.rho(at.phi(torch.stack(subsets_by_hand(x, 2))).mean(0, True))
    assert torch.allclose(at(x, **grouping), expected, atol=1e-6)
    over = JanossyPooling([2, 4], [4, 1], k=2, max_tuples=count - 1,
                          tuples=tuples)
    option = '' if tuples == 'permutations' else " and tuples='combinations'"
    with pytest.raises(ValueError, match=re.escape(
            f"k=2{option} needs {count} tuples for this batch (the largest "
            f"set has 11 elements and {count} tuples), above "
            f"'max_tuples'={count - 1}")):
        over(x, **grouping)


def test_as_aggr_of_sage_conv():
    aggr = JanossyPooling([4, 8], [8, 4], k=2)
    conv = SAGEConv(4, 6, aggr=aggr)
    x = torch.randn(5, 4)
    edge_index = torch.tensor([[1, 2, 3, 4, 0, 4], [0, 0, 1, 1, 2, 3]])
    out = conv(x, edge_index)
    messages = aggr(x[edge_index[0]], edge_index[1], dim_size=5)
    assert torch.allclose(out, conv.lin_l(messages) + conv.lin_r(x),
                          atol=1e-6)
    assert torch.allclose(messages[4], aggr.rho(torch.zeros(1, 8))[0])


@pytest.mark.slow
@pytest.mark.parametrize('tuples', ['permutations', 'combinations'])
def test_torch_compile(tuples):
    model = JanossyPooling([3, 8], [8, 2], k=2, tuples=tuples)
    x, batch = make_batch([2, 0, 5, 1], 3, shuffle=True)
    ptr = torch.tensor([0, 2, 2, 7, 8])
    sorted_x = x[torch.argsort(batch, stable=True)]
    # The number of tuples is data-dependent: by default the graph breaks
    # exactly where it is read, and nowhere else.
    explain = torch._dynamo.explain(model)(x, batch, dim_size=4)
    assert explain.graph_break_count > 0
    assert all('Tensor.item()' in r.reason for r in explain.break_reasons)
    # Allowed to capture it, the model is one graph (fullgraph=True raises
    # on any break).
    with torch._dynamo.config.patch(capture_scalar_outputs=True):
        compiled = torch.compile(model, fullgraph=True, dynamic=True,
                                 backend='aot_eager')
        assert torch.allclose(compiled(x, batch, dim_size=4),
                              model(x, batch, dim_size=4), atol=1e-6)
        assert torch.allclose(compiled(sorted_x, ptr=ptr),
                              model(sorted_x, ptr=ptr), atol=1e-6)
        x2, batch2 = make_batch([6, 1, 3], 3)
        assert torch.allclose(compiled(x2, batch2, dim_size=3),
                              model(x2, batch2, dim_size=3), atol=1e-6)
        model.max_tuples = 10
        tight = torch.compile(model, fullgraph=True, dynamic=True,
                              backend='aot_eager')
        with pytest.raises(RuntimeError):
            tight(x2, batch2, dim_size=3)


@pytest.mark.parametrize('tuples', ['permutations', 'combinations'])
def test_leading_dimensions(tuples):
    # PyG's Aggregation contract: [*, N, F] along dim=-2, or elements along
    # dim=0 with heads in between (GATConv's messages). With combinations,
    # each slice of the leading dimensions has its own canonical order: it
    # gives what it gives alone.
    model = JanossyPooling([3, 8], [8, 2], k=2, tuples=tuples)
    x = torch.randn(2, 6, 3)
    index = torch.tensor([0, 2, 0, 2, 2, 0])
    out = model(x, index, dim_size=4)
    assert out.shape == (2, 4, 2)
    for i in range(2):
        assert torch.allclose(out[i], model(x[i], index, dim_size=4),
                              atol=1e-6)
    heads = model(x.transpose(0, 1), index, dim=0, dim_size=4)
    assert torch.allclose(heads, out.transpose(0, 1), atol=1e-6)


def test_repr():
    model = JanossyPooling([3, 8], [8, 2], k=2)
    assert str(model) == ('JanossyPooling(phi=SplitMLP(6, 8), rho=MLP(8, 2), '
                          "k=2, tuples='permutations', "
                          'aggr=MeanAggregation())')
    assert str(JanossyPooling([3, 8], [8, 2], tuples='combinations')) == (
        'JanossyPooling(phi=SplitMLP(6, 8), rho=MLP(8, 2), '
        "k=2, tuples='combinations', aggr=MeanAggregation())")


def test_bad_input():
    with pytest.raises(ValueError, match=r"'k' must be a positive int "
                       r"\(got 0\)"):
        JanossyPooling([3, 8], [8, 2], k=0)
    with pytest.raises(ValueError, match="'phi' takes 5 input channels, "
                       "which is not k=2 elements"):
        JanossyPooling(torch.nn.Linear(5, 8), [8, 2], k=2)
    with pytest.raises(ValueError, match="'rho' takes 4 input channels but "
                       "'phi' pooled with MeanAggregation\\(\\) gives 8 "
                       "features per set"):
        JanossyPooling([3, 8], [4, 2])
    model = JanossyPooling(torch.nn.Linear(6, 8), [8, 2], k=2)
    assert model.in_channels == 3
    with pytest.raises(ValueError, match="'x' has 4 features per element but "
                       "the model expects 3"):
        model(torch.randn(5, 4))
    with pytest.raises(ValueError,
                       match="'index' has 3 entries but 'x' has 4"):
        model(torch.randn(4, 3), torch.tensor([0, 0, 1]))
    with pytest.raises(TypeError, match="'x' must be a torch.Tensor"):
        model('x')
    with pytest.raises(TypeError, match="'x' is torch.float64 but the "
                       "model's parameters are torch.float32"):
        model(torch.randn(4, 3, dtype=torch.float64))
    # A custom phi shows its width at the first call, as in the core models.
    wide = JanossyPooling(AbsDiff(), [2, 2], k=2)
    with pytest.raises(ValueError, match=r"'rho' takes 2 input channels but "
                       r"'phi' pooled with MeanAggregation\(\) gives 1 "
                       r"features per set; make rho's input width 1"):
        wide(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]))
    # A lazy phi learns the tuple width at the first call.
    lazy = JanossyPooling([-1, 8], [8, 2], k=3)
    assert lazy(torch.randn(5, 2)).shape == (1, 2)
    assert lazy.phi.lin.in_channels == 6


# Combinations #############################################################


class Slots(torch.nn.Module):
    r"""A :math:`\phi` given as a function of the tuple features."""
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, t):
        return self.fn(t)


class Diff(torch.nn.Module):
    r""":math:`a_0 - b_0` of a pair :math:`(a, b)` of 2-d elements: the order
    of the pair matters."""
    def forward(self, t):
        return t[:, :1] - t[:, 2:3]


def subsets_by_hand(xs, k):
    r"""The k-subsets of one set, each in lexicographic order of the rows
    (Python's order of lists), zero slots after a set smaller than k."""
    n = xs.size(0)
    if n == 0:
        return []
    rows = [xs[i] for i in sorted(range(n), key=lambda i: xs[i].tolist())]
    pad = [torch.zeros_like(xs[0])] * max(k - n, 0)
    return [torch.cat([rows[i] for i in c] + pad)
            for c in itertools.combinations(range(n), min(n, k))]


def test_hand_computed_combinations(toy):
    x, index, ptr = toy
    model = JanossyPooling(Diff(), torch.nn.Identity(), k=2,
                           tuples='combinations')
    # Feature 0 per set, rows in lexicographic order: (1, 3); (-1, 0, 2),
    # pairs (-1, 0), (-1, 2), (0, 2); the singleton (5) with a zero slot.
    expected = torch.tensor([[-2.0], [-2.0], [5.0]])
    assert torch.equal(model(x, index), expected)
    assert torch.equal(model(x, ptr=ptr), expected)
    summed = JanossyPooling(Diff(), torch.nn.Identity(), k=2, aggr='sum',
                            tuples='combinations')
    assert torch.equal(summed(x, index), torch.tensor([[-2.0], [-6.0],
                                                       [5.0]]))
    # Ties on the first feature are broken by the second: (1, 9) < (1, 2)
    # is false, so the pair is ((1, 2), (1, 9)) and phi reads 2 - 9.
    second = JanossyPooling(Slots(lambda t: t[:, 1:2] - t[:, 3:4]),
                            torch.nn.Identity(), k=2, tuples='combinations')
    pair = torch.tensor([[1.0, 9.0], [1.0, 2.0]])
    assert torch.equal(second(pair), torch.tensor([[-7.0]]))
    # k = 3 on sets of 3 and 2 elements: one triple each, the smaller one
    # with an empty (zero) last slot.
    triple = JanossyPooling(Slots(lambda t: t * torch.tensor(
        [1.0, 10.0, 100.0])), torch.nn.Identity(), k=3,
        tuples='combinations')
    x = torch.tensor([[3.0], [1.0], [2.0], [7.0], [4.0]])
    out = triple(x, torch.tensor([0, 0, 0, 1, 1]))
    assert torch.equal(out, torch.tensor([[1.0, 20.0, 300.0],
                                          [4.0, 70.0, 0.0]]))


@pytest.mark.parametrize('k', [1, 2, 3])
@pytest.mark.parametrize('aggr', AGGRS)
def test_combinations_match_reference(k, aggr):
    torch.manual_seed(k)
    model = janossy([3, 8, 4], [4, 8, 2], k=k, aggr=aggr,
                    tuples='combinations').double()
    x, batch = make_batch([4, 0, 1, 2, 5], 3, dtype=torch.float64,
                          shuffle=True)
    out = model(x, batch, dim_size=5)
    rows = []
    for s in range(5):
        tuples = subsets_by_hand(x[batch == s], k)
        if not tuples:
            rows.append(torch.zeros(4, dtype=x.dtype))
            continue
        h = model.phi(torch.stack(tuples))
        rows.append(h.mean(0) if aggr == 'mean' else
                    h.sum(0) if aggr == 'sum' else h.max(0).values)
    assert torch.allclose(out, model.rho(torch.stack(rows)), atol=1e-12)


def test_phi_sees_each_subset_once():
    phi = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh())
    model = JanossyPooling(phi, [4, 1], k=3, tuples='combinations')
    seen = []
    model.phi.register_forward_hook(lambda m, i, o: seen.append(i[0].size(0)))
    x, batch = make_batch([30, 1, 0, 20, 2], 2)
    model(x, batch, dim_size=5)
    assert seen == [math.comb(30, 3) + 1 + math.comb(20, 3) + 1]


def shuffled_within_sets(batch, gen):
    r"""A reordering of the rows that keeps every row in its set and the sets
    in their order: new row k is old row perm[k]."""
    noise = torch.rand(batch.numel(), generator=gen, dtype=torch.float64)
    return torch.argsort(batch.to(torch.float64) + noise)


@given(sizes=set_sizes, k=st.integers(1, 4), aggr=st.sampled_from(AGGRS),
       levels=st.integers(1, 4), seed=st.integers(0, 999))
def test_combinations_exactly_invariant(sizes, k, aggr, levels, seed):
    # Features from a few levels: ties in some columns and equal rows are
    # common. Reordering the elements of a set must not change a single bit
    # of the output: the canonical order gives phi the same tuples in the
    # same rows. Reordering the sets moves their tuples to other rows of
    # phi's matrix products, whose rounding on the CPU depends on the row
    # (measured: about one in six small products), so there the output
    # agrees to float rounding, as for every other model.
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, batch = make_batch(sizes, 2, generator=gen)
    x = torch.randint(0, levels, x.shape, generator=gen).float() / 2
    model = JanossyPooling([2, 8, 4], [4, 2], k=k, aggr=aggr,
                           tuples='combinations')
    out = model(x, batch, dim_size=len(sizes))
    for _ in range(4):
        perm = shuffled_within_sets(batch, gen)
        assert torch.equal(model(x[perm], batch[perm], dim_size=len(sizes)),
                           out)
    assert permutation_error(model, x, batch, dim_size=len(sizes),
                             num_trials=4, generator=gen) < 1e-6
    for s in range(len(sizes)):  # independent of the other sets
        assert torch.allclose(out[s:s + 1], model(x[batch == s]), atol=1e-6)
    ptr = torch.tensor([0] + sizes).cumsum(0)
    order = torch.argsort(batch, stable=True)
    assert torch.allclose(model(x[order], ptr=ptr), out, atol=1e-6)


def test_combinations_example_with_two_equal_rows():
    # An example the property test found: sets of 1 and 4 rows, two of
    # them equal, k=3, summed. Bitwise equal under any order of the rows
    # within their sets; reordering the sets moves their tuples to other
    # rows of phi's products, whose CPU rounding depends on the row.
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    x, batch = make_batch([1, 4], 2, generator=gen)
    x = torch.randint(0, 3, x.shape, generator=gen).float() / 2
    model = JanossyPooling([2, 8, 4], [4, 2], k=3, aggr='sum',
                           tuples='combinations')
    out = model(x, batch, dim_size=2)
    for _ in range(8):
        perm = shuffled_within_sets(batch, gen)
        assert torch.equal(model(x[perm], batch[perm], dim_size=2), out)
    assert permutation_error(model, x, batch, dim_size=2, num_trials=4,
                             generator=gen) < 1e-6


def test_ties_do_not_break_invariance():
    # Equal rows, and rows tied on the first feature: all 5! orders of the
    # set give the same bits with a phi that reads the order of its slots.
    torch.manual_seed(0)
    model = JanossyPooling([2, 8, 8, 3], [3, 2], k=3, tuples='combinations')
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 0.0], [0.0, 5.0],
                      [1.0, 2.0]])
    expected = model(x)
    for perm in itertools.permutations(range(5)):
        assert torch.equal(model(x[list(perm)]), expected)
    # Not every order of a tuple gives the same phi: the order is real.
    tuples = torch.cat([x[[3, 2, 0]].view(1, -1), x[[0, 2, 3]].view(1, -1)])
    h = model.phi(tuples)
    assert not torch.allclose(h[0], h[1])


def test_symmetric_phi_both_options_agree():
    # A phi symmetric in its slots sees the same value in every order of a
    # subset: the mean and max over ordered tuples are those over subsets,
    # and the sum k! times theirs (here for every set of 3 or more).
    torch.manual_seed(0)
    inner = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh())

    def symmetric(t):
        a, b, c = inner(t[:, :2]), inner(t[:, 2:4]), inner(t[:, 4:])
        return a + b + c + a * b * c

    phi = Slots(symmetric)

    x, batch = make_batch([4, 0, 3, 5], 2)
    for aggr, factor in (('mean', 1), ('max', 1), ('sum', 6)):
        ordered = JanossyPooling(phi, torch.nn.Identity(), k=3, aggr=aggr)
        subsets = JanossyPooling(phi, torch.nn.Identity(), k=3, aggr=aggr,
                                 tuples='combinations')
        assert torch.allclose(ordered(x, batch, dim_size=4),
                              factor * subsets(x, batch, dim_size=4),
                              atol=1e-5)


def test_combinations_gradients():
    torch.manual_seed(0)
    model = JanossyPooling([3, 4, 4], [4, 2], k=3, act='tanh',
                           tuples='combinations').double()
    # Distinct values far apart: the canonical order is the same in every
    # point of the finite differences.
    x = (torch.randperm(21, dtype=torch.float64) / 8 - 1.25).view(7, 3)
    x.requires_grad_()
    batch = torch.tensor([0, 0, 0, 2, 2, 3, 3, 3][:7])  # set 1 empty
    params = tuple(model.parameters())

    def f(x, *weights):
        return model(x, batch, dim_size=4)

    assert torch.autograd.gradcheck(f, (x, ) + params, atol=1e-6)
    assert torch.autograd.gradgradcheck(lambda t: f(t), (x, ), atol=1e-6)
    f(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_combinations_budget():
    model = JanossyPooling([2, 4], [4, 1], k=2, max_tuples=60,
                           tuples='combinations')
    x, batch = make_batch([11, 3], 2)
    model(x, batch)  # 55 + 3 subsets fit; 110 + 6 ordered pairs would not
    with pytest.raises(ValueError, match="needs 116 tuples"):
        JanossyPooling([2, 4], [4, 1], k=2, max_tuples=60)(x, batch)
    x, batch = make_batch([12, 2], 2)
    message = ("Janossy pooling with k=2 and tuples='combinations' needs 67 "
               "tuples for this batch (the largest set has 12 elements and "
               "66 tuples), above 'max_tuples'=60. The cost grows as "
               "n^k/k! per set")
    with pytest.raises(ValueError, match=re.escape(message)):
        model(x, batch)
    # Counts beyond the budget saturate: C(50, 40) > 2^31.
    huge = JanossyPooling([1, 4], [4, 1], k=40, max_tuples=2**31,
                          tuples='combinations')
    with pytest.raises(ValueError, match=f"needs {math.comb(50, 40):,} "
                       "tuples"):
        huge(torch.randn(50, 1))
    # Below it, the same count is exact: C(34, 17) = 2,333,606,220 > 2^31,
    # C(33, 16) = 1,166,803,110 fits and is built no further than counted.
    assert int(num_tuples(torch.tensor([33, 34, 0, 5]), 16, cap=2**31 + 1,
                          tuples='combinations').sum()) == \
        math.comb(33, 16) + (2**31 + 1) + 1


def test_tuples_option_is_checked():
    for bad in ('subsets', None, 'Combinations'):
        with pytest.raises(ValueError, match="'tuples' must be "
                           "'permutations' .* or 'combinations' .* "
                           f"\\(got {re.escape(repr(bad))}\\)"):
            JanossyPooling([3, 8], [8, 2], tuples=bad)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16,
                                   torch.float64])
def test_combinations_dtypes(dtype):
    torch.manual_seed(0)
    model = JanossyPooling([3, 8], [8, 2], k=3, tuples='combinations')
    x, batch = make_batch([5, 0, 1, 9], 3)
    # Values exact in every dtype: the canonical order is the same in all.
    x = (x * 4).round() / 4
    with torch.no_grad():
        ref = model(x, batch, dim_size=4)
        out = model.to(dtype)(x.to(dtype), batch, dim_size=4)
    assert out.dtype == dtype
    assert relative_error(out, ref) <= RELATIVE_TOLERANCES[dtype]


# pi-SGD ####################################################################


def gru_last(gru, seq):
    r"""The GRU's last hidden state after reading :obj:`seq` in order."""
    return gru(seq.unsqueeze(1))[1][-1, 0]


@pytest.mark.parametrize('rnn', ['gru', 'lstm'])
def test_pisgd_samples_are_orderings_of_their_own_set(rnn):
    torch.manual_seed(0)
    phi = torch.nn.GRU(2, 4) if rnn == 'gru' else torch.nn.LSTM(
        2, 5, num_layers=2, proj_size=4)
    model = JanossyPiSGD(phi.double(), [4, 2]).double()
    x, batch = make_batch([3, 0, 1, 2], 2, dtype=torch.float64, shuffle=True)
    samples = model.sample(x, batch, 4, num_samples=40)
    assert samples.shape == (40, 4, 4)
    for s in range(4):
        xs = x[batch == s]
        if xs.size(0) == 0:
            assert torch.equal(samples[:, s], torch.zeros(40, 4,
                                                          dtype=x.dtype))
            continue
        orders = torch.stack([
            phi(xs[list(p)].unsqueeze(1))[1][0][-1, 0] if rnn == 'lstm' else
            gru_last(phi, xs[list(p)])
            for p in itertools.permutations(range(xs.size(0)))
        ])
        dist = (samples[:, s].unsqueeze(1) - orders.unsqueeze(0)).abs()
        hit = dist.amax(-1).amin(-1)
        assert torch.all(hit < 1e-10)  # every sample is one of them
        if xs.size(0) == 3:  # and 40 samples of 6 orders are not all alike
            assert (dist.amax(-1).argmin(-1)).unique().numel() > 1


def test_pisgd_k_samples_are_tuples_of_their_own_set():
    torch.manual_seed(0)
    model = JanossyPiSGD([2, 8, 4], [4, 2], k=2).double()
    x, batch = make_batch([3, 0, 1, 4], 2, dtype=torch.float64, shuffle=True)
    samples = model.sample(x, batch, 4, num_samples=30)
    for s in range(4):
        tuples = tuples_by_hand(x[batch == s], 2)
        if not tuples:
            assert torch.equal(samples[:, s], torch.zeros(30, 4,
                                                          dtype=x.dtype))
            continue
        exact = model.phi(torch.stack(tuples))
        dist = (samples[:, s].unsqueeze(1) - exact.unsqueeze(0)).abs()
        assert torch.all(dist.amax(-1).amin(-1) < 1e-12)


def test_pisgd_averages_converge_to_full_janossy():
    torch.manual_seed(0)
    gru = torch.nn.GRU(2, 4).double()
    model = JanossyPiSGD(gru, torch.nn.Identity(), num_eval_samples=6000)
    model.eval()
    x, batch = make_batch([3, 1, 0, 2], 2, dtype=torch.float64)
    out = model(x, batch, dim_size=4)
    for s in range(4):
        xs = x[batch == s]
        if xs.size(0) == 0:
            assert torch.equal(out[s], torch.zeros(4, dtype=x.dtype))
            continue
        with torch.no_grad():
            orders = torch.stack([gru_last(gru, xs[list(p)])
                                  for p in itertools.permutations(
                                      range(xs.size(0)))])
        # Standard error of a mean of 6000 draws: spread / 77.
        tol = 5 * float(orders.std(0, unbiased=False).max()) / 77 + 1e-12
        assert torch.allclose(out[s], orders.mean(0), atol=tol)
    # k-ary sampling estimates the exact k-ary Janossy pooling.
    sampled = JanossyPiSGD([2, 8, 4], torch.nn.Identity(), k=2,
                           num_eval_samples=6000).double().eval()
    exact = JanossyPooling(sampled.phi, torch.nn.Identity(), k=2)
    assert torch.allclose(sampled(x, batch, dim_size=4),
                          exact(x, batch, dim_size=4), atol=0.02)


@settings(max_examples=10)
@given(sizes=set_sizes, k=st.sampled_from([None, 2]),
       seed=st.integers(0, 999))
def test_pisgd_invariance_in_distribution(sizes, k, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    phi = torch.nn.GRU(2, 4) if k is None else [2, 8, 4]
    model = JanossyPiSGD(phi, torch.nn.Identity(), k=k,
                         num_eval_samples=4000).eval()
    x, batch = make_batch(sizes, 2, generator=gen)
    # Sets of up to 6 elements: the estimate moves by ~0.01 between draws
    # (measured for sets of 6, 1, 6 over 700 seeds: median 0.009, largest
    # 0.035), far less than one sampled order does (median 0.56).
    assert_permutation_invariant(model, x, batch, dim_size=len(sizes),
                                 generator=gen, atol=0.05, rtol=0.0)
    small = torch.tensor(sizes)[batch] <= 1
    if small.any():  # sets of 0 or 1 element are deterministic
        out = model(x, batch, dim_size=len(sizes))
        for s in range(len(sizes)):
            if sizes[s] <= 1:
                assert torch.allclose(out[s:s + 1], model(x[batch == s]),
                                      atol=1e-6)


def test_pisgd_training_samples_once_evaluation_averages():
    torch.manual_seed(0)
    model = JanossyPiSGD(torch.nn.GRU(2, 4), [4, 2], num_samples=1,
                         num_eval_samples=7)
    calls = []
    sample = model.sample
    model.sample = lambda *a: calls.append(a[-1]) or sample(*a)
    x, batch = make_batch([5, 3], 2)
    model(x, batch)
    model.eval()
    model(x, batch)
    assert calls == [1, 7]


def test_pisgd_index_equals_ptr_and_gradients():
    model = JanossyPiSGD(torch.nn.GRU(3, 4), [4, 2])
    x, batch = make_batch([3, 0, 1, 2], 3)
    x.requires_grad_()
    torch.manual_seed(5)
    out = model(x, batch, dim_size=4)
    torch.manual_seed(5)
    assert torch.equal(out, model(x, ptr=torch.tensor([0, 3, 3, 4, 6])))
    assert torch.allclose(out[1], model.rho(torch.zeros(1, 4))[0])
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert model(x[:0]).shape == (1, 2)


@pytest.mark.parametrize('k', [None, 2])
def test_pisgd_gradcheck(k):
    torch.manual_seed(0)
    phi = torch.nn.GRU(3, 4) if k is None else [3, 4, 4]
    model = JanossyPiSGD(phi, [4, 2], k=k, num_samples=3, act='tanh')
    model = model.double()
    x = (torch.randperm(21, dtype=torch.float64) / 8 - 1.25).view(7, 3)
    x.requires_grad_()
    batch = torch.tensor([0, 0, 0, 2, 2, 3, 3])

    def f(x):
        torch.manual_seed(1)  # the same sampled orders every call
        return model(x, batch, dim_size=4)

    assert torch.autograd.gradcheck(f, (x, ), atol=1e-6)


@pytest.mark.slow
def test_pisgd_torch_compile():
    x, batch = make_batch([2, 0, 5, 1], 3, shuffle=True)
    model = JanossyPiSGD([3, 8], [8, 2], k=2).eval()
    explain = torch._dynamo.explain(model)
    assert explain(x, batch, dim_size=4).graph_break_count == 0
    recurrent = JanossyPiSGD(torch.nn.GRU(3, 8), [8, 2]).eval()
    # aot_eager draws the same random numbers as eager mode, so the values
    # compare; the recurrent variant runs with graph breaks.
    for module, fullgraph in ((model, True), (recurrent, False)):
        compiled = torch.compile(module, fullgraph=fullgraph, dynamic=True,
                                 backend='aot_eager')
        for sizes in ([2, 0, 5, 1], [7, 1, 3]):
            x, batch = make_batch(sizes, 3, shuffle=True)
            torch.manual_seed(3)
            out = compiled(x, batch, dim_size=len(sizes))
            torch.manual_seed(3)
            expected = module(x, batch, dim_size=len(sizes))
            assert torch.allclose(out, expected, atol=1e-6)


def test_pisgd_repr():
    model = JanossyPiSGD(torch.nn.GRU(3, 8), [8, 2])
    assert str(model) == ('JanossyPiSGD(phi=GRU(3, 8), rho=MLP(8, 2), '
                          'k=None, num_samples=1, num_eval_samples=20)')
    assert str(JanossyPiSGD([3, 8], [8, 2], k=2, num_samples=2)) == (
        'JanossyPiSGD(phi=SplitMLP(6, 8), rho=MLP(8, 2), k=2, '
        'num_samples=2, num_eval_samples=20)')


def test_pisgd_reset_reaches_a_recurrent_phi():
    # The public-class walk (test_conventions.py) builds an MLP phi.
    model = JanossyPiSGD(torch.nn.GRU(3, 8), [8, 2])
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    model.reset_parameters()
    assert all(not torch.all(p == 1.0) for p in model.phi.parameters())


def test_pisgd_bad_input():
    with pytest.raises(TypeError, match="Without 'k', 'phi' must be a "
                       "recurrent layer"):
        JanossyPiSGD([3, 8], [8, 2])
    with pytest.raises(ValueError, match="'phi' must be unidirectional"):
        JanossyPiSGD(torch.nn.GRU(3, 8, bidirectional=True), [16, 2])
    with pytest.raises(ValueError, match="'rho' takes 4 input channels but "
                       "'phi' gives 8"):
        JanossyPiSGD(torch.nn.GRU(3, 8), [4, 2])
    with pytest.raises(ValueError, match="'num_eval_samples' must be a "
                       "positive int"):
        JanossyPiSGD(torch.nn.GRU(3, 8), [8, 2], num_eval_samples=0)
    model = JanossyPiSGD(torch.nn.GRU(3, 8), [8, 2])
    with pytest.raises(ValueError, match="'x' has 2 features per element but "
                       "the model expects 3"):
        model(torch.randn(4, 2))
    # A custom tuple phi shows its width at the first call.
    wide = JanossyPiSGD(AbsDiff(), torch.nn.Linear(2, 2), k=2)
    with pytest.raises(ValueError, match=r"'rho' takes 2 input channels but "
                       r"'phi' gives 1 features per set; make rho's input "
                       r"width 1"):
        wide(torch.randn(4, 2))


def test_pisgd_k_device_path_reads_no_value():
    # The k-tuple variant has no data-dependent shape: nothing is read back
    # on the device path (meta tensors take it), forward and backward.
    model = JanossyPiSGD([3, 8], [8, 2], k=2).to('meta')
    x = torch.randn(50, 3, device='meta', requires_grad=True)
    index = torch.empty(50, dtype=torch.long, device='meta')
    with NoSync():
        model(x, index, dim_size=6).sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16,
                                   torch.float64])
def test_dtypes_match_float32(dtype):
    torch.manual_seed(0)
    model = JanossyPooling([3, 8], [8, 2], k=2)
    other = JanossyPooling([3, 8], [8, 2], k=2)
    other.load_state_dict(model.state_dict())
    x, batch = make_batch([5, 0, 1, 9], 3)
    with torch.no_grad():
        ref = model(x, batch, dim_size=4)
        out = other.to(dtype)(x.to(dtype), batch, dim_size=4)
    assert out.dtype == dtype
    assert relative_error(out, ref) <= RELATIVE_TOLERANCES[dtype]
