r"""The pooled affine layer: pooling then the affine map equals the map
then pooling, with its gradients, along other dimensions and under
autocast."""
import pytest
import torch

from tests.helpers import (
    LAYOUTS,
    grouping,
    make_batch,
)
from torch_geometric.utils import scatter
from torch_geometric_deepsets._kernels import pool_affine


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
