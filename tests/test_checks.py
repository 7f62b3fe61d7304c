r"""Argument checks that say what to fix: a number of sets in the ptr slot,
dropout out of range, features of the wrong dtype or without a feature
dimension, a context of another dtype; and value checks that read a device
only in PyG's debug mode."""
import pytest
import torch

import torch_geometric
from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsEquivariant,
    DeepSetsInvariant,
    DeepSetsPointCloud,
    PermutationEquivariantLayer,
)
from torch_geometric_deepsets.checks import value_checks_enabled
from torch_geometric_deepsets.grouping import resolve_sets

MODELS = {
    'invariant': lambda: DeepSetsInvariant([3, 8], [8, 2]),
    'layer': lambda: PermutationEquivariantLayer(3, 4),
    'equivariant': lambda: DeepSetsEquivariant([3, 8, 2]),
    'point_cloud': lambda: DeepSetsPointCloud(3, 4, hidden_channels=8),
}



@pytest.mark.parametrize('name', list(MODELS))
def test_number_of_sets_in_the_ptr_slot_says_to_pass_dim_size(name):
    model = MODELS[name]()
    x, batch = torch.randn(5, 3), torch.tensor([0, 0, 1, 1, 2])
    with pytest.raises(TypeError, match=r"'ptr' must be a torch.Tensor "
                       r"\(got int\).*pass dim_size="):
        model(x, batch, 3)
    assert model(x, batch, dim_size=3).size(0) in (3, 5)



def test_number_of_sets_in_the_ptr_slot_of_the_conditional_model():
    model = DeepSetsConditional([3, 8], [8, 2], context_channels=2)
    x, batch = torch.randn(5, 3), torch.tensor([0, 0, 1, 1, 2])
    with pytest.raises(TypeError, match='pass dim_size='):
        model(x, torch.randn(3, 2), batch, 3)



@pytest.mark.parametrize('build', [
    lambda d: DeepSetsInvariant([3, 8], [8, 2], dropout=d),
    lambda d: DeepSetsEquivariant([3, 8], dropout=d),
    lambda d: DeepSetsConditional([3, 8], [8, 2], context_channels=2,
                                  dropout=d),
    lambda d: DeepSetsPointCloud(dropout=d),
])
def test_dropout_outside_zero_one_is_refused_at_construction(build):
    for bad in (-0.1, 1.0, 1.5, True):
        with pytest.raises(ValueError,
                           match=r"'dropout' must lie in \[0, 1\)"):
            build(bad)



@pytest.mark.parametrize('name', list(MODELS))
def test_integer_and_float64_features_say_what_to_convert(name):
    model = MODELS[name]()
    batch = torch.tensor([0, 0, 1])
    with pytest.raises(TypeError, match=r"'x' holds torch.int64 values but "
                       r"the first layer \(Linear\) takes torch.float32 "
                       r"features; convert with x.to\(torch.float32\)"):
        model(torch.ones(3, 3, dtype=torch.long), batch)
    with pytest.raises(TypeError, match=r"'x' is torch.float64 but the "
                       r"model's parameters are torch.float32"):
        model(torch.randn(3, 3, dtype=torch.float64), batch)
    with pytest.raises(ValueError, match="'x' must have a feature dimension"):
        model(torch.randn(3), batch)



def test_integer_tokens_into_an_embedding_are_fine():
    phi = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(1),
                              torch.nn.Linear(4, 8))
    model = DeepSetsInvariant(phi, [8, 1])
    tokens = torch.tensor([[3], [7], [1]])
    assert model(tokens, torch.tensor([0, 0, 1])).shape == (2, 1)



def test_features_under_autocast_are_fine():
    model = DeepSetsInvariant([3, 8], [8, 2])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(torch.randn(4, 3, dtype=torch.bfloat16),
                    torch.tensor([0, 0, 1, 1]))
    assert out.shape == (2, 2)



def test_context_of_another_dtype_says_what_to_convert():
    model = DeepSetsConditional([3, 8], [8, 2], context_channels=2)
    with pytest.raises(TypeError, match=r"'context' is torch.float64 but "
                       r"'x' is torch.float32"):
        model(torch.randn(4, 3), torch.randn(2, 2, dtype=torch.float64),
              torch.tensor([0, 0, 1, 1]))


def test_value_checks_run_on_the_cpu_and_elsewhere_only_in_debug_mode():
    cpu = torch.zeros(3, dtype=torch.long)
    meta = torch.zeros(3, dtype=torch.long, device='meta')
    assert value_checks_enabled(cpu)
    assert not value_checks_enabled(meta)  # a read would sync a device
    with torch_geometric.debug():
        assert value_checks_enabled(meta)
    # On such a device a bad ptr is caught in debug mode only: its values
    # are never read otherwise.
    x = torch.randn(5, 2, device='meta')
    bad_ptr = torch.tensor([0, 2, 4], device='meta')
    resolve_sets(x, ptr=bad_ptr)
    with torch_geometric.debug():
        with pytest.raises(RuntimeError, match="item"):  # reads the values
            resolve_sets(x, ptr=bad_ptr)
