import pytest
import torch

from tests.helpers import make_batch
from torch_geometric_deepsets import DeepSetsInvariant
from torch_geometric_deepsets.testing import (
    RELATIVE_TOLERANCES,
    assert_permutation_equivariant,
    assert_permutation_invariant,
    permutation_error,
    random_set_permutation,
    relative_error,
)


class FirstElement(torch.nn.Module):
    r"""Not invariant: returns the first row of each set."""
    def forward(self, x, batch, dim_size=None):
        out = x.new_zeros(dim_size, x.size(1))
        first = torch.ones_like(batch, dtype=torch.bool)
        first[1:] = batch[1:] != batch[:-1]
        out[batch[first]] = x[first]
        return out


class Cumsum(torch.nn.Module):
    r"""Not equivariant: a running sum over rows."""
    def forward(self, x, batch, dim_size=None):
        return x.cumsum(0)


class SetIdBias(torch.nn.Module):
    r"""Invariant within sets but not under relabelling of the sets."""
    def forward(self, x, batch, dim_size=None):
        out = x.new_zeros(dim_size, x.size(1)).index_add_(0, batch, x)
        return out + torch.arange(dim_size).unsqueeze(-1)


def test_random_set_permutation_is_valid():
    batch = torch.tensor([0, 0, 1, 1, 1, 3])
    perm, set_perm = random_set_permutation(batch, 4)
    assert torch.equal(torch.sort(perm).values, torch.arange(6))
    assert torch.equal(torch.sort(set_perm).values, torch.arange(4))
    new_batch = set_perm[batch[perm]]
    assert bool((new_batch[1:] >= new_batch[:-1]).all())


def test_detects_broken_models():
    x, batch = make_batch([4, 5, 3], 2)
    with pytest.raises(AssertionError, match='not permutation invariant: max '
                       'error'):
        assert_permutation_invariant(FirstElement(), x, batch, num_trials=5)
    with pytest.raises(AssertionError, match='not permutation equivariant'):
        assert_permutation_equivariant(Cumsum(), x, batch)
    assert permutation_error(SetIdBias(), x, batch, num_trials=5) >= 1.0


def test_reports_error_and_uses_dtype_tolerance():
    x, batch = make_batch([4, 5, 3], 2, dtype=torch.float64)
    model = DeepSetsInvariant([2, 8], [8, 1]).double()
    error = assert_permutation_invariant(model, x, batch)
    assert 0.0 <= error < 1e-12
    # A tight tolerance makes a float32 model with reordered sums fail.
    x32, batch32 = make_batch([3000], 4)
    model32 = DeepSetsInvariant([4, 64], [64, 1])
    assert permutation_error(model32, x32 * 100, batch32) > 0
    with pytest.raises(AssertionError, match=r'atol=0, rtol=0'):
        assert_permutation_invariant(model32, x32 * 100, batch32, atol=0,
                                     rtol=0)


def test_input_checks():
    x, batch = make_batch([2, 2], 2)
    with pytest.raises(ValueError, match="set input 'context' has 3 rows but "
                       "there are 2 sets"):
        permutation_error(DeepSetsInvariant([2, 4], [4, 1]), x, batch,
                          dim_size=2, set_inputs={'context': torch.ones(3, 1)})
    with pytest.raises(ValueError, match="element input 'w' has 1 rows"):
        permutation_error(DeepSetsInvariant([2, 4], [4, 1]), x, batch,
                          element_inputs={'w': torch.ones(1)})


def test_relative_error_by_hand():
    # max |a - b| = 0.5 over max |b| = 4; float16 inputs are compared in
    # float32; below 1e-3 the scale stops shrinking.
    a = torch.tensor([1.0, -2.5, 4.0])
    b = torch.tensor([1.0, -2.0, 4.0])
    assert relative_error(a, b) == 0.125
    assert relative_error(a.half(), b.double()) == 0.125
    assert relative_error(torch.tensor([1e-3]), torch.zeros(1)) == 1.0
    assert relative_error(b, b) == 0.0
    # The float64 bound is float32's rounding, far below the half ones.
    assert RELATIVE_TOLERANCES[torch.float64] < \
        RELATIVE_TOLERANCES[torch.float16] < \
        RELATIVE_TOLERANCES[torch.bfloat16]
