r"""Weighted sums, means and extremes against hand computations: a row of
weight k counts as k copies, weight 0 as absent, and real weights extend the
same formulas."""
import pytest
import torch

from torch_geometric_deepsets._kernels.weighted import (
    pool_affine_weighted,
    weight_totals,
    weighted_extreme,
    weighted_mean,
    weighted_sum,
)

X = torch.tensor([[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0], [2.0, 2.0],
                  [0.0, -3.0], [5.0, 1.0]], dtype=torch.float64)
INDEX = torch.tensor([0, 0, 1, 1, 1, 2])
W = torch.tensor([2.0, 0.5, 0.0, 1.0, 3.0, 0.0],
                 dtype=torch.float64).view(-1, 1)


def test_weighted_sum_and_mean_by_hand():
    out = weighted_sum(X, INDEX, None, 4, 0, W)
    expected = torch.tensor([[2 * 1 + 0.5 * 3, 2 * -2 + 0.5 * 0.5],
                             [2.0 + 0.0, 2.0 - 9.0], [0.0, 0.0],
                             [0.0, 0.0]], dtype=torch.float64)
    assert torch.equal(out, expected)
    totals = weight_totals(W, X, INDEX, None, 4, 0)
    assert torch.equal(totals.view(-1), torch.tensor(
        [2.5, 4.0, 0.0, 0.0], dtype=torch.float64))
    mean = weighted_mean(X, INDEX, None, 4, 0, W)
    # Sets 2 (all weights 0) and 3 (empty) pool to what an empty set gives.
    assert torch.allclose(mean, torch.tensor(
        [[3.5 / 2.5, -3.75 / 2.5], [0.5, -7.0 / 4], [0.0, 0.0], [0.0, 0.0]],
        dtype=torch.float64))


@pytest.mark.parametrize('reduce', ['max', 'min'])
def test_weighted_extreme_skips_rows_of_weight_zero(reduce):
    out = weighted_extreme(X, INDEX, None, 4, 0, W, reduce)
    pick = torch.maximum if reduce == 'max' else torch.minimum
    expected = torch.stack([pick(X[0], X[1]), pick(X[3], X[4]),
                            torch.zeros(2, dtype=torch.float64),
                            torch.zeros(2, dtype=torch.float64)])
    assert torch.equal(out, expected)


def test_weighted_extreme_gradient_goes_to_tied_rows_of_positive_weight():
    x = torch.tensor([[2.0], [2.0], [2.0], [5.0]], requires_grad=True)
    w = torch.tensor([1.0, 0.0, 4.0, 0.0]).view(-1, 1)
    index = torch.tensor([0, 0, 0, 0])
    weighted_extreme(x, index, None, 1, 0, w, 'max').sum().backward()
    # Row 3 is larger but absent; rows 0 and 2 tie (weight does not split
    # the gradient further: the max of copies is the max).
    assert torch.equal(x.grad.view(-1), torch.tensor([0.5, 0.0, 0.5, 0.0]))


def test_real_weights_are_differentiable():
    w = W.clone().requires_grad_()
    weighted_sum(X, INDEX, None, 3, 0, w).sum().backward()
    assert torch.equal(w.grad, X.sum(-1, keepdim=True))
    w.grad = None
    # d/dw_i of the mean of set s: (x_i - mean_s) / W_s.
    weighted_mean(X[:2], INDEX[:2], None, 1, 0, w[:2])[0, 0].backward()
    mean = (2 * 1 + 0.5 * 3) / 2.5
    assert torch.allclose(w.grad[:2].view(-1), torch.tensor(
        [(1 - mean) / 2.5, (3 - mean) / 2.5], dtype=torch.float64))


@pytest.mark.parametrize('mean', [False, True])
def test_pool_affine_weighted_by_hand(mean):
    lin = torch.nn.Linear(2, 3).double()
    out = pool_affine_weighted(X, lin.weight, lin.bias, INDEX, None, 4,
                               mean, 0, W)
    rows = []
    for s in range(4):
        rows_s = INDEX == s
        w_s = W[rows_s]
        terms = (lin(X[rows_s]) * w_s).sum(0)
        total = w_s.sum()
        if mean:
            terms = terms / total if total > 0 else torch.zeros(3).double()
        rows.append(terms)
    assert torch.allclose(out, torch.stack(rows), atol=1e-12)
