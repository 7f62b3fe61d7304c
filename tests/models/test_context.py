r"""The per-set context: a lazy context width found at the first call, then
checked, and checked against a rho given as a module."""
import pytest
import torch

from tests.helpers import make_batch
from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsConditionalEquivariant,
)


@pytest.mark.parametrize('fusion', ['concat', 'film', 'add'])
@pytest.mark.parametrize('model', ['conditional', 'conditional_no_rho',
                                   'equivariant'])
def test_lazy_context_width_is_found_at_the_first_call(model, fusion):
    x, batch = make_batch([3, 0, 4], 5)
    context = torch.randn(3, 6)

    def build(width):
        torch.manual_seed(0)
        if model == 'equivariant':
            return DeepSetsConditionalEquivariant([5, 8, 4], width,
                                                  fusion=fusion)
        return DeepSetsConditional([5, 8, 4], [4, 2], context_channels=width,
                                   fusion=fusion,
                                   context_in_rho=model == 'conditional')

    def call(module, z):
        return module(x, z, batch, dim_size=3)

    lazy = build(-1)
    out = call(lazy, context)
    # The same model with the width given, and the lazy model's weights.
    eager = build(6)
    eager.load_state_dict(lazy.state_dict())
    assert torch.allclose(out, call(eager, context), atol=1e-6)
    assert {k: v.shape for k, v in lazy.state_dict().items()} == \
        {k: v.shape for k, v in eager.state_dict().items()}
    # The model depends on the context, and is invariant/equivariant for a
    # fixed one.
    assert not torch.allclose(out, call(lazy, context + 1.0))
    # Once found, another width is an error naming the context.
    with pytest.raises(ValueError, match=r"'context' has 4 features but "
                       r"'context_channels' is 6 \(found at the first call"):
        call(lazy, torch.randn(3, 4))
    assert '-1' in repr(lazy)



def test_lazy_context_width_before_the_first_call():
    # Nothing to check the width against yet; rho given as a module is
    # checked at the first call, once the context width is known.
    model = DeepSetsConditional([5, 8], torch.nn.Linear(8 + 3, 2),
                                context_channels=-1)
    x, batch = make_batch([2, 3], 5)
    assert model(x, torch.randn(2, 3), batch).shape == (2, 2)
    with pytest.raises(ValueError, match="'rho' takes 11 input channels"):
        DeepSetsConditional([5, 8], torch.nn.Linear(11, 2),
                            context_channels=-1)(x, torch.randn(2, 4), batch)
    with pytest.raises(ValueError, match=r"'context_channels' must be a "
                       r"positive int, or -1"):
        DeepSetsConditional([5, 8], [8, 2], context_channels=-2)
