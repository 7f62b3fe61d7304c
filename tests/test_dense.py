import pytest
import torch

from torch_geometric.data import Batch, Data
from torch_geometric_deepsets import (
    DeepSetsInvariant,
    from_dense,
    pool,
    to_dense,
)


def test_from_dense_and_back():
    dense = torch.arange(2 * 3 * 2, dtype=torch.float).view(2, 3, 2)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    x, batch, ptr = from_dense(dense, mask)
    assert torch.equal(x, torch.tensor([[0.0, 1.0], [2.0, 3.0], [6.0, 7.0]]))
    assert torch.equal(batch, torch.tensor([0, 0, 1]))
    assert torch.equal(ptr, torch.tensor([0, 2, 3]))
    back, back_mask = to_dense(x, batch)
    assert torch.equal(back_mask, mask[:, :2])
    assert torch.equal(back[back_mask], x)
    assert torch.equal(back[~back_mask], torch.zeros(1, 2))

    x_all, batch_all, ptr_all = from_dense(dense)
    assert torch.equal(batch_all, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert torch.equal(ptr_all, torch.tensor([0, 3, 6]))


def test_round_trip_keeps_trailing_empty_sets():
    # 5 sets, the last one empty: batch alone cannot show it, ptr does.
    dense = torch.randn(5, 4, 2)
    lengths = torch.tensor([2, 4, 0, 1, 0])
    sets = from_dense(dense, lengths=lengths)
    assert sets.num_sets == 5
    assert torch.equal(sets.ptr, torch.tensor([0, 2, 6, 6, 7, 7]))
    back, mask = to_dense(sets.x, sets.batch, dim_size=sets.num_sets,
                          max_size=4)
    assert back.shape == (5, 4, 2)
    assert torch.equal(mask.sum(1), lengths)
    assert torch.equal(back[mask], dense[mask])
    model = DeepSetsInvariant([2, 8], [8, 1])
    out = model(sets.x, ptr=sets.ptr)
    assert out.shape == (5, 1)
    assert torch.allclose(out, model(sets.x, sets.batch,
                                     dim_size=sets.num_sets))


def test_lengths_equal_the_mask_they_describe():
    dense = torch.randn(3, 4, 2)
    lengths = torch.tensor([1, 4, 2])
    mask = torch.arange(4).unsqueeze(0) < lengths.unsqueeze(1)
    for a, b in zip(from_dense(dense, lengths=lengths),
                    from_dense(dense, mask)):
        assert torch.equal(a, b)


def test_to_dense_unsorted_empty_sets_and_max_size():
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    batch = torch.tensor([2, 0, 2, 0])
    dense, mask = to_dense(x, batch, dim_size=4, max_size=3, fill_value=-1)
    assert dense.shape == (4, 3, 1)
    assert torch.equal(dense[0, :2, 0], torch.tensor([2.0, 4.0]))
    assert torch.equal(dense[2, :2, 0], torch.tensor([1.0, 3.0]))
    assert not mask[1].any() and not mask[3].any()
    assert torch.equal(dense[1, :, 0], torch.full((3, ), -1.0))
    with pytest.raises(ValueError, match="'max_size' is 1 but a set holds 2"):
        to_dense(x, batch, max_size=1)


def test_masked_model_matches_on_dense_data():
    dense = torch.randn(3, 5, 2)
    mask = torch.rand(3, 5) > 0.4
    mask[2] = False  # an empty set
    model = DeepSetsInvariant([2, 8], [8, 1], aggr='sum')
    x, batch, ptr = from_dense(dense, mask)
    out = model(x, batch, dim_size=3)
    assert torch.equal(out, model(x, ptr=ptr))
    h = model.phi(dense) * mask.unsqueeze(-1)
    assert torch.allclose(out, model.rho(h.sum(1)), atol=1e-5)


def test_pyg_batch_of_edgeless_graphs():
    sets = [Data(x=torch.randn(n, 3)) for n in (4, 1, 7)]
    data = Batch.from_data_list(sets)
    model = DeepSetsInvariant([3, 8], [8, 2])
    out = model(data.x, data.batch)
    assert out.shape == (3, 2)
    assert torch.allclose(out, model(data.x, ptr=data.ptr), atol=1e-6)
    assert torch.allclose(out[1:2], model(sets[1].x), atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match=r"padded tensor \[B, M, F\]"):
        from_dense(torch.randn(3, 2))
    with pytest.raises(TypeError, match=r"'mask' must be a bool tensor \(got "
                       r"dtype torch.float32\); pass mask.bool\(\)"):
        from_dense(torch.randn(2, 3, 1), torch.ones(2, 3))
    with pytest.raises(TypeError, match=r"pass mask.bool\(\)"):
        from_dense(torch.randn(2, 3, 1), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"'mask' has shape \(2, 2\) but 'x' "
                       "holds 2 sets of 3 slots"):
        from_dense(torch.randn(2, 3, 1), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="either 'mask' or 'lengths'"):
        from_dense(torch.randn(2, 3, 1), torch.ones(2, 3, dtype=torch.bool),
                   torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"'lengths' must lie in \[0, 3\]"):
        from_dense(torch.randn(2, 3, 1), lengths=torch.tensor([1, 4]))
    with pytest.raises(ValueError, match=r"'lengths' has shape \(3,\) but "
                       "'x' holds 2 sets"):
        from_dense(torch.randn(2, 3, 1), lengths=torch.tensor([1, 1, 1]))
    with pytest.raises(TypeError, match="'lengths' must be an integer"):
        from_dense(torch.randn(2, 3, 1), lengths=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"'x' must be a matrix "
                       r"\[num_elements, num_features\] \(got shape "
                       r"\(2, 3, 1\)\)"):
        to_dense(torch.randn(2, 3, 1), torch.tensor([0, 0, 1]))


def test_a_float_mask_becomes_weights_where_asked():
    padded = torch.tensor([[[1.], [3.], [6.]], [[2.], [5.], [7.]]],
                          dtype=torch.float64)
    soft = torch.tensor([[0.5, 0.0, 2.0], [1.0, 1.0, 0.0]],
                        dtype=torch.float64)
    sets = from_dense(padded, weight=soft)
    # Slots of weight 0 are no element; the others keep their weights.
    assert torch.equal(sets.x.view(-1), torch.tensor([1., 6., 2., 5.],
                                                     dtype=torch.float64))
    assert torch.equal(sets.batch, torch.tensor([0, 0, 1, 1]))
    assert torch.equal(sets.weight, torch.tensor([0.5, 2.0, 1.0, 1.0],
                                                 dtype=torch.float64))
    assert sets.num_sets == 2
    # The masked-and-weighted way, by hand.
    model = DeepSetsInvariant([1, 8, 8], [8, 1], aggr='sum').double()
    by_hand = (model.phi(padded) * soft.unsqueeze(-1)).sum(1)
    assert torch.allclose(model(sets.x, ptr=sets.ptr, weight=sets.weight),
                          model.rho(by_hand), atol=1e-12)
    # A mask and weights together; and back to padded weights.
    mask = torch.tensor([[True, True, False], [True, True, True]])
    both = from_dense(padded, mask, weight=soft)
    assert torch.equal(both.weight, torch.tensor([0.5, 1.0, 1.0],
                                                 dtype=torch.float64))
    dense, dense_mask, dense_weight = to_dense(
        sets.x, sets.batch, dim_size=2, weight=sets.weight)
    assert torch.equal(dense_weight, torch.tensor([[0.5, 2.0], [1.0, 1.0]],
                                                  dtype=torch.float64))
    assert dense_mask.all() and dense.shape == (2, 2, 1)
    with pytest.raises(ValueError, match=r"'weight' must hold one weight per "
                       r"slot, shape \(2, 3\)"):
        from_dense(padded, weight=soft[:, :2])
    with pytest.raises(ValueError, match="'weight' holds the negative"):
        from_dense(padded, weight=-soft)


def test_a_float_mask_names_the_weights():
    with pytest.raises(TypeError, match=r"pass mask.bool\(\) .True where an "
                       r"element sits., or weight=mask"):
        from_dense(torch.randn(2, 3, 1), torch.ones(2, 3))


@pytest.mark.parametrize('call', [
    lambda model, x, mask: model(x, mask),
    lambda model, x, mask: pool(x, mask),
    lambda model, x, mask: model(x.view(-1, 2), mask.view(-1)),
])
def test_a_boolean_mask_where_the_set_ids_go_names_from_dense(call):
    x = torch.randn(3, 4, 2)
    mask = torch.ones(3, 4, dtype=torch.bool)
    model = DeepSetsInvariant([2, 8], [8, 1])
    with pytest.raises(TypeError, match=r"is a boolean tensor of shape .*"
                       r"looks like a padding mask; .*from_dense\(x, mask\)"):
        call(model, x, mask)


def test_padded_input_without_ids_is_one_set_per_slice():
    # The trap the dense guide shows: (B, M, F) without ids runs B batches
    # of one set each, padding included (the leading dimension convention).
    x = torch.randn(3, 4, 2)
    model = DeepSetsInvariant([2, 8], [8, 1])
    out = model(x)
    assert out.shape == (3, 1, 1)
    assert torch.allclose(out[1], model(x[1]))
