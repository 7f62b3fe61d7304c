import pytest
import torch

import torch_geometric.typing
from tests.conftest import make_batch
from torch_geometric.testing import withDevice, withPackage
from torch_geometric.utils import scatter
from torch_geometric_deepsets._kernels import segment_pool

REDUCE = ['sum', 'mean', 'max']


def ptr_of(batch, num_sets):
    counts = torch.bincount(batch, minlength=num_sets)
    return torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])


@withDevice
@pytest.mark.parametrize('reduce', REDUCE)
@pytest.mark.parametrize('layout', ['ptr', 'sorted', 'unsorted'])
def test_matches_pyg_scatter_forward_and_backward(reduce, layout, device):
    sizes = [5, 0, 1, 17, 3, 0, 300]
    x, batch = make_batch(sizes, 6, dtype=torch.float64,
                          shuffle=layout == 'unsorted')
    ptr = ptr_of(batch, len(sizes)) if layout == 'ptr' else None
    x, batch = x.to(device), batch.to(device)
    ptr = ptr.to(device) if ptr is not None else None
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    out = segment_pool(x1, batch, ptr, len(sizes), reduce)
    expected = scatter(x2, batch, 0, len(sizes), reduce)
    assert torch.allclose(out, expected, atol=1e-12)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-12)


def test_max_gradient_splits_evenly_between_ties():
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [3.0, -1.0], [-5.0, -7.0]],
                     requires_grad=True)
    index = torch.tensor([0, 0, 0, 2])
    out = segment_pool(x, index, None, 3, 'max')
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
@pytest.mark.parametrize('path', ['blocked', 'whole'])
def test_max_backward_matches_amax(dtype, layout, with_ties, path,
                                   monkeypatch):
    import torch_geometric_deepsets._kernels as kernels

    # Blocks of 2-3 rows, so that sets and runs of ties cross block bounds;
    # or the whole-tensor form that devices other than the CPU take.
    monkeypatch.setattr(kernels, 'BLOCK_BYTES', 3 * 5 * 8 - 1)
    if path == 'whole':
        monkeypatch.setattr(kernels, '_max_backward_blocked',
                            kernels._max_backward_whole)
    sizes = [4, 0, 1, 9, 300, 2, 0]
    x, batch = make_batch(sizes, 5, shuffle=layout == 'unsorted')
    if with_ties:
        x = x.round()  # many exact ties, 300 of them where a set is all 0
        x[batch == 4, 2] = 0.0
    x = x.to(dtype)
    ptr = ptr_of(batch, len(sizes)) if layout == 'ptr' else None
    grad = torch.randn(len(sizes), 5).to(dtype)
    xi = x.clone().requires_grad_()
    out = segment_pool(xi, batch, ptr, len(sizes), 'max')
    out.backward(grad)
    expected = amax_reference_grad(x, batch, len(sizes), grad)
    tol = 1e-12 if dtype == torch.float64 else 1e-2
    assert xi.grad.dtype == dtype
    assert torch.allclose(xi.grad.double(), expected, rtol=tol, atol=tol)
    # Every set's gradient sums back to its output gradient (0 when empty).
    per_set = torch.zeros(len(sizes), 5, dtype=torch.float64).index_add_(
        0, batch, xi.grad.double())
    nonempty = torch.tensor(sizes) > 0
    assert torch.allclose(per_set[nonempty], grad[nonempty].double(),
                          rtol=tol, atol=tol)


@pytest.mark.parametrize('reduce', REDUCE)
@withDevice
def test_gradcheck_with_empty_sets_and_ties(reduce, device):
    x = torch.randn(7, 3, dtype=torch.float64, device=device)
    x[1] = x[0]  # exact ties in set 0
    x = x.requires_grad_()
    index = torch.tensor([0, 0, 0, 2, 2, 4, 4], device=device)
    assert torch.autograd.gradcheck(
        lambda t: segment_pool(t, index, None, 5, reduce), (x, ))
    ptr = torch.tensor([0, 3, 3, 5, 5, 7], device=device)
    assert torch.autograd.gradcheck(
        lambda t: segment_pool(t, index, ptr, 5, reduce), (x, ))


@pytest.mark.parametrize('reduce', REDUCE)
def test_nan_stays_in_its_set(reduce):
    x = torch.randn(5, 2, requires_grad=True)
    with torch.no_grad():
        x[1, 0] = float('nan')
    index = torch.tensor([0, 0, 1, 1, 1])
    out = segment_pool(x, index, None, 2, reduce)
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


@withPackage('torch_scatter')
@pytest.mark.parametrize('reduce', REDUCE)
def test_torch_scatter_backend_gives_identical_results(reduce, monkeypatch):
    # Halves are summed exactly in any order, so results must be bitwise equal.
    # Sets of ~3000 rows take the chunked summation path.
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


def test_rejects_non_matrix_input():
    with pytest.raises(ValueError, match="'x' must be two-dimensional"):
        segment_pool(torch.randn(3), torch.zeros(3, dtype=torch.long), None,
                     1, 'sum')


@withDevice
def test_sum_of_a_huge_set_stays_accurate(device):
    x = 1000 + torch.randn(200_000, 2, dtype=torch.float64, device=device)
    index = torch.zeros(200_000, dtype=torch.long, device=device)
    exact = x.mean(0)
    for ptr in (None, torch.tensor([0, 200_000], device=device)):
        if ptr is None and device.type != 'cpu':
            continue  # GPU atomics without ptr: documented as unchunked
        mean = segment_pool(x.float(), index, ptr, 1, 'mean')[0].double()
        # Sequential float32 summation is ~1e-2 off here (measured).
        assert (mean - exact).abs().max() < 1e-4


@withDevice
@pytest.mark.parametrize('layout', ['ptr', 'sorted', 'unsorted'])
def test_gather_sets_matches_index_select(layout, device):
    from torch_geometric_deepsets._kernels import gather_sets
    sizes = [3, 0, 1, 200, 2]
    _, batch = make_batch(sizes, 1, shuffle=layout == 'unsorted')
    ptr = ptr_of(batch, 5).to(device) if layout == 'ptr' else None
    batch = batch.to(device)
    src = torch.randn(5, 4, dtype=torch.float64, device=device,
                      requires_grad=True)
    out = gather_sets(src, batch, ptr)
    assert torch.equal(out, src.index_select(0, batch))
    grad = torch.randn_like(out)
    out.backward(grad)
    expected = torch.zeros_like(src).index_add_(0, batch, grad)
    assert torch.allclose(src.grad, expected, atol=1e-12)
    assert torch.equal(src.grad[1], torch.zeros(4, dtype=torch.float64,
                                                device=device))
    assert torch.autograd.gradcheck(lambda s: gather_sets(s, batch, ptr),
                                    (src, ))
