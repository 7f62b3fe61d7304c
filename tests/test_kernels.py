import pytest
import torch

import torch_geometric.typing
import torch_geometric_deepsets._kernels as kernels
import torch_geometric_deepsets._kernels.extremes as extremes
from tests.helpers import Count, make_batch, ptr_of
from torch_geometric.index import ptr2index
from torch_geometric.testing import withDevice, withPackage
from torch_geometric.utils import scatter
from torch_geometric_deepsets import pool
from torch_geometric_deepsets._kernels import pool_affine, segment_pool

REDUCE = ['sum', 'mean', 'max']
LAYOUTS = ['sorted', 'unsorted', 'ptr', 'both']


def test_ptr_to_index_is_pygs_ptr2index():
    for ptr in ([0], [0, 0], [0, 3, 3, 4, 9, 9]):
        ptr = torch.tensor(ptr)
        expected = ptr2index(ptr, int(ptr[-1]))
        assert torch.equal(kernels.ptr_to_index(ptr, int(ptr[-1])), expected)


def grouping(batch, num_sets, layout):
    r"""(index, ptr) as the models pass them on for each layout."""
    if layout in ('sorted', 'unsorted'):
        return batch, None
    ptr = ptr_of(batch, num_sets)
    return (batch if layout == 'both' else None), ptr


@withDevice
@pytest.mark.parametrize('reduce', REDUCE)
@pytest.mark.parametrize('layout', LAYOUTS)
def test_matches_pyg_scatter_forward_and_backward(reduce, layout, device,
                                                  kernel_path):
    sizes = [5, 0, 1, 17, 3, 0, 300]
    x, batch = make_batch(sizes, 6, dtype=torch.float64,
                          shuffle=layout == 'unsorted')
    index, ptr = grouping(batch, len(sizes), layout)
    x, batch = x.to(device), batch.to(device)
    index = index.to(device) if index is not None else None
    ptr = ptr.to(device) if ptr is not None else None
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    out = segment_pool(x1, index, ptr, len(sizes), reduce)
    expected = scatter(x2, batch, 0, len(sizes), reduce)
    assert torch.allclose(out, expected, atol=1e-12)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-12)


@pytest.mark.parametrize('layout', ['unsorted', 'ptr'])
def test_max_gradient_splits_evenly_between_ties(layout, kernel_path):
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [3.0, -1.0], [-5.0, -7.0]],
                     requires_grad=True)
    index, ptr = torch.tensor([0, 0, 0, 2]), None
    if layout == 'ptr':
        index, ptr = None, torch.tensor([0, 3, 3, 4])
    out = segment_pool(x, index, ptr, 3, 'max')
    assert torch.equal(out, torch.tensor([[3.0, 2.0], [0.0, 0.0],
                                          [-5.0, -7.0]]))
    out.backward(torch.tensor([[1.0, 4.0], [9.0, 9.0], [1.0, 1.0]]))
    assert torch.equal(x.grad, torch.tensor([[0.0, 2.0], [0.5, 2.0],
                                             [0.5, 0.0], [1.0, 1.0]]))


def amax_reference_grad(x, batch, num_sets, grad):
    r"""Gradient of every set's :func:`torch.amax` (the even tie split),
    set by set in float64."""
    expected = torch.zeros(x.shape, dtype=torch.float64)
    for s in range(num_sets):
        rows = x[batch == s].double().requires_grad_()
        if rows.numel() > 0:
            rows.amax(0).backward(grad[s].double())
            expected[batch == s] = rows.grad
    return expected


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16,
                                   torch.float64])
@pytest.mark.parametrize('layout', ['ptr', 'unsorted'])
@pytest.mark.parametrize('with_ties', [False, True])
def test_max_backward_matches_amax(dtype, layout, with_ties, monkeypatch,
                                   kernel_path):
    # Blocks of 2-3 rows, so that sets and runs of ties cross block bounds
    # (host path); the device path takes the whole-tensor form, or PyTorch's
    # segment reduction for ptr alone.
    monkeypatch.setattr(extremes, 'BLOCK_BYTES', 3 * 5 * 8 - 1)
    sizes = [4, 0, 1, 9, 300, 2, 0]
    x, batch = make_batch(sizes, 5, shuffle=layout == 'unsorted')
    if with_ties:
        x = x.round()  # many exact ties, 300 of them where a set is all 0
        x[batch == 4, 2] = 0.0
    x = x.to(dtype)
    index, ptr = grouping(batch, len(sizes), layout)
    grad = torch.randn(len(sizes), 5).to(dtype)
    xi = x.clone().requires_grad_()
    out = segment_pool(xi, index, ptr, len(sizes), 'max')
    out.backward(grad)
    expected = amax_reference_grad(x, batch, len(sizes), grad)
    # A tie split divides by the tie count: exact up to one rounding.
    tol = {torch.float64: 1e-12, torch.float32: 1e-6,
           torch.bfloat16: 1e-2}[dtype]
    assert xi.grad.dtype == dtype
    assert torch.allclose(xi.grad.double(), expected, rtol=tol, atol=tol)
    # Every set's gradient sums back to its output gradient (0 when empty).
    per_set = torch.zeros(len(sizes), 5, dtype=torch.float64).index_add_(
        0, batch, xi.grad.double())
    nonempty = torch.tensor(sizes) > 0
    assert torch.allclose(per_set[nonempty], grad[nonempty].double(),
                          rtol=tol, atol=tol)


def test_blocked_and_whole_max_backward_agree(monkeypatch):
    monkeypatch.setattr(extremes, 'BLOCK_BYTES', 3 * 4 * 4 - 1)
    x, batch = make_batch([4, 0, 7, 300, 1], 4, shuffle=True)
    x = x.round()
    out = torch.zeros(5, 4).scatter_reduce_(
        0, batch.view(-1, 1).expand_as(x), x, 'amax', include_self=False)
    grad = torch.randn(5, 4)
    blocked = extremes._backward_blocked(grad, x, batch, out)
    whole = extremes._backward_whole(grad, x, batch, out, 0)
    assert torch.allclose(blocked, whole, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('reduce', REDUCE)
@pytest.mark.parametrize('layout', ['unsorted', 'ptr', 'both'])
@withDevice
def test_gradcheck_with_empty_sets_and_ties(reduce, layout, device,
                                            kernel_path):
    x = torch.randn(7, 3, dtype=torch.float64, device=device)
    x[1] = x[0]  # exact ties in set 0
    x = x.requires_grad_()
    index = torch.tensor([0, 0, 0, 2, 2, 4, 4], device=device)
    ptr = torch.tensor([0, 3, 3, 5, 5, 7], device=device)
    if layout == 'unsorted':
        ptr = None
    elif layout == 'ptr':
        index = None
    assert torch.autograd.gradcheck(
        lambda t: segment_pool(t, index, ptr, 5, reduce), (x, ))


@pytest.mark.parametrize('reduce', REDUCE)
@pytest.mark.parametrize('layout', ['unsorted', 'ptr'])
def test_nan_stays_in_its_set(reduce, layout, kernel_path):
    x = torch.randn(5, 2, requires_grad=True)
    with torch.no_grad():
        x[1, 0] = float('nan')
    index, ptr = torch.tensor([0, 0, 1, 1, 1]), None
    if layout == 'ptr':
        index, ptr = None, torch.tensor([0, 2, 5])
    out = segment_pool(x, index, ptr, 2, reduce)
    assert torch.isnan(out[0, 0]) and torch.isfinite(out[1]).all()
    out[1].sum().backward()
    assert torch.isfinite(x.grad).all()


def test_nan_in_one_set_does_not_hide_a_tie_in_another():
    # Set 0's NaN maximum has no maximum row, set 1 has two: as many maxima
    # as (set, feature) pairs, yet set 1's gradient must still be split.
    x = torch.tensor([[float('nan'), 0.0], [1.0, 0.5], [2.0, 1.0],
                      [2.0, 0.0]], requires_grad=True)
    index = torch.tensor([0, 0, 1, 1])
    out = segment_pool(x, index, None, 2, 'max')
    out.backward(torch.ones_like(out))
    assert torch.equal(x.grad[2:], torch.tensor([[0.5, 1.0], [0.5, 0.0]]))


def _backends():
    return [False, True] if torch_geometric.typing.WITH_TORCH_SCATTER \
        else [False]


@withPackage('torch_scatter')
@pytest.mark.parametrize('reduce', REDUCE)
def test_torch_scatter_backend_gives_identical_results(reduce, monkeypatch):
    # Halves are summed exactly in any order, so results must be bitwise
    # equal. Sets of ~3000 rows take the chunked summation path.
    x = torch.randint(-8, 8, (20000, 4)).float() / 2
    batch = torch.sort(torch.randint(0, 6, (20000, ))).values
    ptr = ptr_of(batch, 6)
    grad = torch.randint(-4, 4, (6, 4)).float()
    results = []
    for backend in (True, False):
        monkeypatch.setattr(torch_geometric.typing, 'WITH_TORCH_SCATTER',
                            backend)
        xi = x.clone().requires_grad_()
        out = segment_pool(xi, batch, ptr, 6, reduce)
        out.backward(grad)
        results.append((out, xi.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize('backend', _backends())
@pytest.mark.parametrize('layout', ['sorted', 'unsorted', 'ptr'])
@pytest.mark.parametrize('sizes', [[10, 4990], [4990, 10], [3, 0, 2500, 7,
                                                            2600]])
def test_long_sums_respect_set_boundaries(sizes, layout, backend,
                                          monkeypatch):
    # Ones sum exactly in any order: every set must get its own size back,
    # whether the long sets come first or last.
    monkeypatch.setattr(torch_geometric.typing, 'WITH_TORCH_SCATTER',
                        backend)
    x, batch = make_batch(sizes, 2, shuffle=layout == 'unsorted')
    x = torch.ones_like(x)
    index, ptr = grouping(batch, len(sizes), layout)
    for reduce, expected in (('sum', torch.tensor(sizes).float()),
                             ('mean', (torch.tensor(sizes) > 0).float())):
        out = segment_pool(x, index, ptr, len(sizes), reduce)
        assert torch.equal(out, expected.view(-1, 1).expand(-1, 2)), reduce


@pytest.mark.parametrize('backend', _backends())
@pytest.mark.parametrize('layout', ['sorted', 'ptr'])
@pytest.mark.parametrize('order', ['short_first', 'long_first'])
def test_mean_of_a_huge_set_next_to_a_small_one_is_accurate(
        backend, layout, order, monkeypatch):
    monkeypatch.setattr(torch_geometric.typing, 'WITH_TORCH_SCATTER',
                        backend)
    sizes = [1, 1_000_000] if order == 'short_first' else [1_000_000, 1]
    gen = torch.Generator().manual_seed(0)
    _, batch = make_batch(sizes, 1)
    x = 1000 + torch.rand(batch.numel(), 1, generator=gen,
                          dtype=torch.float64)
    exact = scatter(x, batch, 0, 2, 'mean')
    index, ptr = grouping(batch, 2, layout)
    mean = segment_pool(x.float(), index, ptr, 2, 'mean').double()
    # A sequential float32 sum is ~1e-2 off here (measured); chunked, the
    # error stays at float32 resolution.
    assert ((mean - exact).abs() / exact).max() < 1e-6


def test_long_sets_are_chunked_on_the_host_path_only(kernel_path):
    x = 1000 + torch.rand(200_000, 1)
    index = torch.zeros(200_000, dtype=torch.long)
    exact = x.double().mean()
    mean = segment_pool(x, index, None, 1, 'mean')[0, 0].double()
    error = float(abs(mean - exact) / exact)
    if kernel_path == 'host':
        assert error < 1e-6
    else:  # the device path sums like PyG's scatter
        assert error > 1e-5


def test_sum_of_a_huge_set_stays_accurate():
    # Only the host path (eager CPU) chunks long sums; the device path is
    # pinned in test_long_sets_are_chunked_on_the_host_path_only.
    x = 1000 + torch.randn(200_000, 2, dtype=torch.float64)
    index = torch.zeros(200_000, dtype=torch.long)
    exact = x.mean(0)
    for ptr in (None, torch.tensor([0, 200_000])):
        mean = segment_pool(x.float(), index, ptr, 1, 'mean')[0].double()
        assert (mean - exact).abs().max() < 1e-4


@pytest.mark.parametrize('backend', _backends())
def test_long_sums_of_interleaved_sets_are_accurate(backend, monkeypatch):
    # Several sets over LONG_SET rows (and a short one), their rows mixed in
    # an unsorted batch vector: each set must get its own rows, summed as
    # accurately as when the rows come sorted with ptr. Sets sit at
    # different offsets, so a row counted in another set shows.
    monkeypatch.setattr(torch_geometric.typing, 'WITH_TORCH_SCATTER',
                        backend)
    gen = torch.Generator().manual_seed(0)
    sizes = [120_000, 3, 90_000, 150_000]
    _, batch = make_batch(sizes, 1)
    x = 1000 * (1 + batch.double().view(-1, 1)) + torch.rand(
        batch.numel(), 2, generator=gen, dtype=torch.float64)
    exact = scatter(x, batch, 0, len(sizes), 'sum')
    ptr = ptr_of(batch, len(sizes))
    perm = torch.randperm(batch.numel(), generator=gen)
    assert not bool((batch[perm][1:] >= batch[perm][:-1]).all())
    shuffled = pool(x[perm].float(), batch[perm], dim_size=len(sizes))
    ordered = pool(x.float(), ptr=ptr)

    def error(out):
        return float(((out.double() - exact) / exact).abs().max())

    # Float32 resolution, where one float32 pass is measurably off.
    assert error(shuffled) < 1e-6 and error(ordered) < 1e-6
    plain = torch.zeros(len(sizes), 2).index_add_(0, batch[perm],
                                                 x[perm].float())
    assert error(plain) > 1e-5
    torch.testing.assert_close(shuffled, ordered, rtol=2e-6, atol=0)


# Pooling in front of an affine layer ########################################


def affine_reference(h, weight, bias, batch, num_sets, reduce):
    return scatter(torch.nn.functional.linear(h, weight, bias), batch, 0,
                   num_sets, reduce)


@pytest.mark.parametrize('reduce', ['sum', 'mean'])
@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('with_bias', [True, False])
def test_pool_affine_equals_affine_then_pool(reduce, layout, with_bias,
                                             kernel_path):
    sizes = [3, 0, 1, 5, 0]
    h, batch = make_batch(sizes, 4, dtype=torch.float64,
                          shuffle=layout == 'unsorted')
    index, ptr = grouping(batch, len(sizes), layout)
    weight = torch.randn(3, 4, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64) if with_bias else None
    out = pool_affine(h, weight, bias, index, ptr, len(sizes), reduce)
    expected = affine_reference(h, weight, bias, batch, len(sizes), reduce)
    assert torch.allclose(out, expected, atol=1e-12)
    # Empty sets get 0, as pooling the layer's outputs would give.
    assert torch.equal(out[1], torch.zeros(3, dtype=torch.float64))
    args = [t.requires_grad_() for t in (h, weight) + (
        (bias, ) if with_bias else ())]

    def fn(*a):
        b = a[2] if with_bias else None
        return pool_affine(a[0], a[1], b, index, ptr, len(sizes), reduce)

    assert torch.autograd.gradcheck(fn, tuple(args))
    assert torch.autograd.gradgradcheck(fn, tuple(args))


@pytest.mark.parametrize('reduce', ['sum', 'mean'])
def test_pool_affine_along_other_dimensions(reduce):
    h = torch.randn(5, 2, 4, dtype=torch.float64)  # [N, heads, C]
    batch = torch.tensor([0, 0, 2, 2, 2])
    weight = torch.randn(3, 4, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)
    out = pool_affine(h, weight, bias, batch, None, 3, reduce, dim=0)
    expected = scatter(torch.nn.functional.linear(h, weight, bias), batch,
                       0, 3, reduce)
    assert torch.allclose(out, expected, atol=1e-12)


def test_pool_affine_under_autocast():
    h = torch.randn(6, 4)
    batch = torch.tensor([0, 0, 1, 1, 1, 3])
    lin = torch.nn.Linear(4, 3)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = pool_affine(h, lin.weight, lin.bias, batch, None, 4, 'sum')
        expected = scatter(lin(h), batch, 0, 4, 'sum')
    assert out.dtype == expected.dtype == torch.bfloat16
    assert torch.allclose(out.float(), expected.float(), atol=5e-2)
    out.float().sum().backward()
    assert lin.weight.grad.dtype == torch.float32


@pytest.mark.parametrize('reduce', ['sum', 'mean'])
@pytest.mark.parametrize('affine', [False, True])
def test_ptr_on_the_cpu_takes_no_segment_kernel(reduce, affine):
    # torch._segment_reduce's sum and its backward ran 10x slower than
    # index_add_/index_select on the CPU (65k x 128 rows): ptr input there
    # goes through set ids. Other devices keep the segment kernel (counted
    # on meta tensors in test_device_path.py).
    x = torch.randn(40, 3, requires_grad=True)
    ptr = torch.tensor([0, 10, 10, 25, 40])
    weight, bias = torch.randn(2, 3), torch.randn(2)
    with Count() as counter:
        if affine:
            out = pool_affine(x, weight, bias, None, ptr, 4, reduce)
        else:
            out = segment_pool(x, None, ptr, 4, reduce)
        out.sum().backward()
    assert not any('segment_reduce' in op for op in counter.ops), counter.ops
    assert counter.ops['aten.index_add_'] == 1
    index = ptr2index(ptr, 40)
    expected = scatter(x, index, 0, 4, reduce)
    if affine:
        expected = expected @ weight.t() + (
            bias * (ptr.diff() > 0)[:, None] if reduce == 'mean' else
            ptr.diff()[:, None] * bias)
    assert torch.allclose(out, expected, atol=1e-6)
