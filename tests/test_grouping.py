r"""How rows form sets: resolve_sets fills in what a forward needs from
batch, ptr and dim_size, and names the argument and sizes of a bad one."""
import pytest
import torch

from torch_geometric_deepsets.grouping import resolve_sets


def test_bad_grouping_messages():
    x = torch.randn(5, 2)

    def check(*args, **kwargs):
        return resolve_sets(x, *args, **kwargs)

    with pytest.raises(ValueError,
                       match="'batch' has 4 entries but 'x' has 5"):
        check(torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="'batch' must be an integer tensor"):
        check(torch.zeros(5))
    with pytest.raises(TypeError, match="'ptr' must be an integer tensor"):
        check(ptr=torch.tensor([0.0, 5.0]))
    with pytest.raises(TypeError, match="'batch' must be a torch.Tensor"):
        check([0, 0, 0, 0, 0])
    with pytest.raises(TypeError, match="pass dim_size="):
        check(torch.zeros(5, dtype=torch.long), 3)
    with pytest.raises(ValueError, match=r"end at the number of rows .*5"):
        check(ptr=torch.tensor([0, 2, 4]))
    with pytest.raises(ValueError, match='start at 0'):
        check(ptr=torch.tensor([1, 2, 5]))
    with pytest.raises(ValueError, match='non-decreasing'):
        check(ptr=torch.tensor([0, 3, 2, 5]))
    with pytest.raises(ValueError, match="'dim_size' is 2 but 'ptr' has 4"):
        check(ptr=torch.tensor([0, 2, 4, 5]), dim_size=2)
    with pytest.raises(ValueError,
                       match=r"ids in \[0, 3\] but 'dim_size' is 2"):
        check(torch.tensor([0, 1, 3, 1, 0]), dim_size=2)
    for dim_size in (2, None):
        # With or without dim_size: the ids' range is read either way.
        with pytest.raises(ValueError, match=r"'batch' holds the negative "
                           r"set id -1.*torch.unique\(batch, return_inverse"):
            check(torch.tensor([0, 1, -1, 1, 0]), dim_size=dim_size)
    with pytest.raises(ValueError, match='describe different sets'):
        check(torch.tensor([0, 0, 0, 1, 1]), ptr=torch.tensor([0, 2, 5]))
    with pytest.raises(ValueError, match='one-dimensional'):
        check(torch.zeros(5, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="'dim_size' must be an int"):
        check(torch.zeros(5, dtype=torch.long), dim_size=2.0)
    with pytest.raises(ValueError, match="all rows form set 0"):
        check(dim_size=0)
    with pytest.raises(ValueError, match=r"feature dimension.*\(5,\).*"
                       r"view\(-1, 1\)"):
        resolve_sets(torch.randn(5))
    with pytest.raises(ValueError, match="'dim' is -1 .* any dimension but "
                       "the last"):
        check(dim=-1)
    with pytest.raises(TypeError, match="'x' must be a torch.Tensor"):
        resolve_sets([[1.0]])



def test_resolve_sets_fills_in_what_the_forward_needs():
    x = torch.randn(2, 5, 3)
    sets = resolve_sets(x, ptr=torch.tensor([0, 2, 5, 5]))
    assert sets.index is None and sets.dim_size == 3 and sets.dim == 1
    sets = resolve_sets(x, torch.tensor([0, 0, 1, 1, 1]))
    assert sets.dim_size == 2 and sets.dim == 1
    sets = resolve_sets(x, dim=0)
    assert torch.equal(sets.index, torch.zeros(2, dtype=torch.long))
    assert sets.dim_size == 1 and sets.dim == 0
