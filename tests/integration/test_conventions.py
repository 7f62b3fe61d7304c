r"""One library, one design: every public module class follows the same
calling conventions, checked by walking them all (tests/public_modules.py
names them; a new public class without a recipe fails)."""
import inspect
import io

import pytest
import torch

from tests.helpers import make_batch
from tests.public_modules import (
    FIRST,
    LAZY,
    MATRIX,
    public_module_classes,
    set_inputs,
)
from torch_geometric.nn.aggr import Aggregation
from torch_geometric.utils import scatter
from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsEquivariant,
    DeepSetsInvariant,
    PermutationEquivariantLayer,
)
from torch_geometric_deepsets.sets import SetAggregation, SetModule
from torch_geometric_deepsets.testing import assert_permutation_equivariant


def test_every_public_module_has_a_lazy_recipe():
    assert public_module_classes() == set(LAZY) == set(MATRIX)


def call(model, args, kwargs, seed=0):
    torch.manual_seed(seed)  # JanossyPiSGD samples orderings
    return model(*args, **kwargs)


@pytest.mark.parametrize('cls,case', FIRST)
def test_one_protocol_and_one_signature(cls, case):
    # The call belongs to the protocol, never to a class.
    assert issubclass(cls, SetModule)
    assert all('__call__' not in vars(base) for base in cls.__mro__
               if base not in (SetModule, torch.nn.Module, Aggregation))
    # PyG's two families: aggregations take (x, index, ...), set modules
    # (x, batch, ...); a conditioned module takes its context second.
    is_aggr = issubclass(cls, Aggregation)
    assert is_aggr == issubclass(cls, SetAggregation)
    index = 'index' if is_aggr else 'batch'
    expected = ['x'] + (['context'] if case.context else []) + [
        index, 'ptr', 'dim_size', 'dim'] + (['max_num_elements']
                                            if is_aggr else []) + (
        ['weight'] if cls.takes_weight else [])
    params = inspect.signature(cls.forward).parameters
    assert list(params)[1:] == expected
    defaults = {name: params[name].default for name in expected[1:]}
    assert defaults.pop('dim') == -2
    if case.context:
        assert defaults.pop('context') is inspect.Parameter.empty
    assert set(defaults.values()) == {None}
    assert cls.takes_context == case.context
    # forward's docstring documents every argument it takes.
    doc = cls.forward.__doc__
    assert all(f'{name} (' in doc for name in expected)


@pytest.mark.parametrize('cls,case', FIRST)
def test_leading_dimensions_and_any_element_dim(cls, case):
    model = case.build().eval()
    # A sampling module is deterministic on sets of one element at most.
    sizes = [1, 0, 1, 1] if case.random else [3, 0, 4, 1]
    args, kwargs = set_inputs(case, sizes)
    x, rest = args[0], args[1:]
    expected = call(model, args, kwargs)
    # [*, N, F]: every leading slice is its own batch of sets.
    stacked = torch.stack([x, 2 * x, -x])
    out = call(model, (stacked.view(3, 1, *x.shape), ) + rest, kwargs)
    assert out.shape == (3, 1) + expected.shape
    torch.testing.assert_close(out[0, 0], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        out[2, 0], call(model, (-x, ) + rest, kwargs), atol=1e-5,
        rtol=1e-5)
    # Elements along another dimension: (N, L, F) with dim=0.
    out = call(model, (stacked.transpose(0, 1), ) + rest, dict(kwargs, dim=0))
    assert out.shape == (expected.size(0), 3, expected.size(-1))
    torch.testing.assert_close(out[:, 1], call(model, (2 * x, ) + rest,
                                               kwargs), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('cls,case', FIRST)
def test_lazy_widths(cls, case):
    torch.manual_seed(0)
    lazy = LAZY[cls]().eval()
    args, kwargs = set_inputs(case, [3, 0, 4, 1])
    out = call(lazy, args, kwargs)
    # After the first call the lazy model is an ordinary one: the same
    # parameter shapes as the model built with the widths, and its weights
    # load into it and give the same output.
    model = case.build().eval()
    assert {k: v.shape for k, v in lazy.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}
    model.load_state_dict(lazy.state_dict())
    torch.testing.assert_close(call(model, args, kwargs), out)
    # A lazy model that never ran loads trained weights too.
    fresh = LAZY[cls]().eval()
    fresh.load_state_dict(lazy.state_dict())
    torch.testing.assert_close(call(fresh, args, kwargs), out)


@pytest.mark.parametrize('cls,case', FIRST)
def test_misplaced_context_names_the_fix(cls, case):
    model = case.build()
    args, kwargs = set_inputs(case, [3, 2])
    x, batch = args[0], args[-1]
    z = torch.randn(2, 2)
    if case.context:
        # Forgotten: the ids land in the context's place.
        with pytest.raises(TypeError, match=r"looks like the set ids.*"
                           r"model\(x, context, batch\)"):
            model(x, batch)
        with pytest.raises(ValueError, match="as its second argument"):
            model(x, batch=batch)
    else:
        with pytest.raises(TypeError, match=r"looks like a per-set context"
                           r".*model\(x, context, batch\)"):
            model(x, z, batch)
        with pytest.raises(ValueError, match="takes no 'context'"):
            model(x, batch, context=z)


@pytest.mark.parametrize('dim_size', [None, 2])
@pytest.mark.parametrize('cls,case', FIRST)
def test_negative_ids_are_a_clear_error(cls, case, dim_size):
    model = case.build()
    args, _ = set_inputs(case, [3, 2])
    batch = args[-1].clone()
    batch[batch == 1] = -1
    name = 'index' if issubclass(cls, Aggregation) else 'batch'
    with pytest.raises(ValueError, match=f"'{name}' holds the negative set "
                       f"id -1.*return_inverse"):
        model(*args[:-1], batch, dim_size=dim_size)


@pytest.mark.parametrize('cls,case', FIRST)
def test_the_other_family_name_is_a_clear_error(cls, case):
    model = case.build()
    args, _ = set_inputs(case, [3, 2])
    ids = args[-1]
    if issubclass(cls, Aggregation):
        with pytest.raises(TypeError, match="names the set ids 'index', not "
                           "'batch'.*pass index=batch"):
            model(*args[:-1], batch=ids)
    else:
        with pytest.raises(TypeError, match="names the set ids 'batch', not "
                           "'index'.*pass batch=index"):
            model(*args[:-1], index=ids)


@pytest.mark.parametrize('cls', sorted(public_module_classes(),
                                       key=lambda cls: cls.__name__),
                         ids=lambda cls: cls.__name__)
def test_reset_parameters_and_state_dict_round_trip(cls):
    assert cls in MATRIX, f'{cls.__name__} has no recipe in public_modules'
    for case in MATRIX[cls].values():
        # Built first: call() seeds the stream that initialisations draw on.
        model, other = case.build().eval(), case.build().eval()
        args, kwargs = set_inputs(case, [2, 3, 1])
        with torch.no_grad():
            for param in model.parameters():
                param.fill_(0.5)
        filled = call(model, args, kwargs)
        # Every parameter is initialised again (norms to the identity).
        model.reset_parameters()
        assert all(not torch.all(param == 0.5)
                   for param in model.parameters())
        out = call(model, args, kwargs)
        assert not torch.equal(out, filled)
        # The weights travel through a file that torch.load reads with
        # weights_only=True, into a model with other weights.
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        buffer.seek(0)
        assert not torch.equal(call(other, args, kwargs), out)
        other.load_state_dict(torch.load(buffer, weights_only=True))
        assert torch.equal(call(other, args, kwargs), out)


def test_lazy_channels_are_found_at_the_first_call():
    x, batch = make_batch([3, 0, 4], 5)
    invariant = DeepSetsInvariant([-1, 16, 16], [-1, 8, 2])
    out = invariant(x, batch, dim_size=3)
    assert out.shape == (3, 2)
    assert invariant.phi.body.lins[0].weight.shape == (16, 5)
    # Once initialised, pooling moves in front of phi's last layer.
    reference = invariant.rho(scatter(invariant.phi(x), batch, 0, 3, 'sum'))
    assert torch.allclose(invariant(x, batch, dim_size=3), reference,
                          atol=1e-5)
    layer = PermutationEquivariantLayer(-1, 4, aggr='max')
    assert layer(x, batch).shape == (7, 4)
    assert layer.lin.weight.shape == (4, 5)
    assert layer.lin_pool.weight.shape == (4, 5)
    assert_permutation_equivariant(layer, x, batch)
    equivariant = DeepSetsEquivariant([-1, 8, 2], readout='mean')
    assert equivariant(x, batch, dim_size=3).shape == (3, 2)
    for fusion in ('concat', 'film'):
        conditional = DeepSetsConditional([-1, 8, 8], [-1, 2],
                                          context_channels=3, fusion=fusion)
        assert conditional(x, torch.randn(3, 3), batch).shape == (3, 2)
