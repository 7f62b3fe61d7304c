r"""The kernels' entry points (segment_pool, pool_affine): PyG's scatter
values and gradients on every grouping layout and code path, empty sets and
ties, the optional torch-scatter backend, and which aten kernels the CPU
takes."""
import pytest
import torch

import torch_geometric.typing
from tests.helpers import (
    AGGRS,
    LAYOUTS,
    Count,
    grouping,
    make_batch,
    ptr_of,
)
from torch_geometric.index import ptr2index
from torch_geometric.testing import withDevice, withPackage
from torch_geometric.utils import scatter
from torch_geometric_deepsets._kernels import pool_affine, segment_pool


@withDevice
@pytest.mark.parametrize('reduce', AGGRS)
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


@pytest.mark.parametrize('reduce', AGGRS)
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


@pytest.mark.parametrize('reduce', AGGRS)
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


@withPackage('torch_scatter')
@pytest.mark.parametrize('reduce', AGGRS)
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
