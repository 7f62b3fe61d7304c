r"""Max pooling's backward: the even split between tied maxima, the
blocked CPU backward and the whole-tensor one, NaN kept in its set."""
import pytest
import torch

import torch_geometric_deepsets._kernels.extremes as extremes
from tests.helpers import (
    grouping,
    make_batch,
)
from torch_geometric_deepsets._kernels import segment_pool


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



def test_nan_in_one_set_does_not_hide_a_tie_in_another():
    # Set 0's NaN maximum has no maximum row, set 1 has two: as many maxima
    # as (set, feature) pairs, yet set 1's gradient must still be split.
    x = torch.tensor([[float('nan'), 0.0], [1.0, 0.5], [2.0, 1.0],
                      [2.0, 0.0]], requires_grad=True)
    index = torch.tensor([0, 0, 1, 1])
    out = segment_pool(x, index, None, 2, 'max')
    out.backward(torch.ones_like(out))
    assert torch.equal(x.grad[2:], torch.tensor([[0.5, 1.0], [0.5, 0.0]]))
