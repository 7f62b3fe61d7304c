r"""The weight rule in every public module class: where a class takes
:obj:`weight`, an element of integer weight k gives what k copies of it
give (outputs and gradients, in float64), per set and per element; where it
cannot, the call refuses by name. The argument's checks, its layouts
(leading dimensions, ``ptr``) and the compiled and exported paths."""
import pytest
import torch

import torch_geometric
from tests.helpers import make_batch
from tests.public_modules import CASES, FIRST, Case, set_inputs
from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsEquivariant,
    DeepSetsInvariant,
    PermutationEquivariantLayer,
    pool,
)

SIZES = [3, 0, 4, 1]


def weighted_and_repeated(case: Case, layout: str, seed: int = 0):
    r"""A module of the case in float64, its inputs with integer weights,
    and the same inputs with every row repeated as often as its weight
    (rows of weight 0 dropped)."""
    torch.manual_seed(seed)
    module = case.build().double().eval()
    args, kwargs = set_inputs(case, SIZES, layout, seed=seed)
    args = tuple(a.double() if a.is_floating_point() else a for a in args)
    x = args[0]
    counts = torch.randint(0, 4, (x.size(0), ),
                           generator=torch.Generator().manual_seed(seed))
    rows = torch.repeat_interleave(torch.arange(x.size(0)), counts)
    repeated = list(args)
    repeated[0] = x[rows]
    if layout == 'index':
        repeated[-1] = args[-1][rows]
        extra = dict(kwargs)
    else:  # rows are sorted by set: new boundaries from the new counts
        ptr = kwargs['ptr']
        sets = torch.repeat_interleave(torch.arange(len(SIZES)),
                                       ptr[1:] - ptr[:-1])
        new_counts = torch.zeros(len(SIZES), dtype=torch.long).index_add_(
            0, sets, counts)
        extra = dict(ptr=torch.cat([new_counts.new_zeros(1),
                                    new_counts.cumsum(0)]))
    return module, args, kwargs, counts, rows, tuple(repeated), extra


def per_element(out, x):
    return out.size(-2) == x.size(-2) and out.size(-2) != len(SIZES)


@pytest.mark.parametrize('layout', ['index', 'ptr'])
@pytest.mark.parametrize('case', CASES)
def test_integer_weights_are_copies(case, layout):
    module, args, kwargs, counts, rows, repeated, extra = \
        weighted_and_repeated(case, layout)
    if not module.takes_weight:
        with pytest.raises(ValueError, match=f"^{type(module).__name__} "
                           f"takes no 'weight': .*Weighted poolings"):
            module(*args, **kwargs, weight=counts)
        return
    # A sampling module would compare draws, not copies: none takes weights.
    assert not case.random
    x = args[0].clone().requires_grad_()
    xr = x[rows]
    out = module(x, *args[1:], **kwargs, weight=counts)
    expected = module(xr, *repeated[1:], **extra)
    if per_element(expected, xr):
        # Each element's output equals that of its copies.
        out = out[rows]
    assert torch.allclose(out, expected, atol=1e-10)
    grads = torch.randn(expected.shape, dtype=torch.float64)
    params = [p for p in module.parameters() if p.requires_grad]
    mine = torch.autograd.grad((out * grads).sum(), [x] + params,
                               allow_unused=True)
    theirs = torch.autograd.grad((expected * grads).sum(), [x] + params,
                                 allow_unused=True)
    for a, b in zip(mine, theirs):
        if a is None or b is None:
            assert a is None and b is None
            continue
        assert torch.allclose(a, b, atol=1e-9)


@pytest.mark.parametrize('cls,case', FIRST)
def test_forward_documents_weight_where_taken(cls, case):
    doc = cls.forward.__doc__
    assert ('weight (torch.Tensor, optional)' in doc) == cls.takes_weight


def model():
    return DeepSetsInvariant([3, 8, 8], [8, 2], aggr='mean')


@pytest.mark.parametrize('weight,error,match', [
    (torch.ones(6), ValueError, r"'weight' has shape \(6,\) but 'x' has "
     r"shape \(7, 3\) with 7 elements along dim 0; give one weight per "
     r"element: shape \[7\]"),
    (torch.ones(7, dtype=torch.bool), TypeError, "'weight' is a boolean "
     "tensor, which looks like a mask: pass weight=mask.to"),
    ([1.0] * 7, TypeError, "'weight' must be a torch.Tensor"),
    (torch.ones(7, dtype=torch.complex64), TypeError, "'weight' must hold "
     "real numbers, float or integer .got dtype torch.complex64"),
    (torch.tensor([1.0, 2.0, -0.5, 1.0, 1.0, 1.0, 1.0]), ValueError,
     "'weight' holds the negative weight -0.5"),
    (torch.ones(7, 1), ValueError, r"'weight' has shape \(7, 1\)"),
])
def test_bad_weights_name_the_argument(weight, error, match):
    x, batch = make_batch([3, 4], 3)
    with pytest.raises(error, match=match):
        model()(x, batch, weight=weight)
    with pytest.raises(error, match=match):
        pool(x, batch, weight=weight)


def test_weight_is_keyword_only_and_on_the_device_of_x():
    x, batch = make_batch([3, 4], 3)
    with pytest.raises(TypeError, match='takes at most'):
        model()(x, batch, None, 2, -2, torch.ones(7))
    with pytest.raises(ValueError, match="'weight' is on meta but 'x' is on "
                       "cpu"):
        model()(x, batch, weight=torch.ones(7, device='meta'))


def test_negative_weights_off_the_host_path_are_found_in_debug(kernel_path):
    x, batch = make_batch([3, 4], 3)
    weight = -torch.ones(7)
    if kernel_path == 'device':  # as a GPU: no value is read
        model()(x, batch, dim_size=2, weight=weight)
        with torch_geometric.debug():
            with pytest.raises(ValueError, match='negative weight'):
                model()(x, batch, dim_size=2, weight=weight)
    else:
        with pytest.raises(ValueError, match='negative weight'):
            model()(x, batch, dim_size=2, weight=weight)


@pytest.mark.parametrize('build', [
    model,
    lambda: PermutationEquivariantLayer(3, 4, 'max'),
    lambda: DeepSetsEquivariant([3, 8, 2], aggr='sum', readout='mean'),
])
def test_leading_dimensions_take_shared_or_own_weights(build):
    module = build()
    x = torch.randn(2, 7, 3)
    batch = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    own = torch.rand(2, 7)
    shared = torch.rand(7)
    out = module(x, batch, weight=own)
    assert torch.allclose(out, torch.stack([
        module(x[i], batch, weight=own[i]) for i in range(2)]), atol=1e-6)
    out = module(x, batch, weight=shared)
    assert torch.allclose(out, torch.stack([
        module(x[i], batch, weight=shared) for i in range(2)]), atol=1e-6)
    # Elements along another dimension: weights follow them.
    moved = module(x.transpose(0, 1), batch, dim=0, weight=own.t())
    assert torch.allclose(moved, module(x, batch, weight=own).transpose(
        0, 1), atol=1e-6)


def test_conditioned_model_with_leading_dimensions():
    module = DeepSetsConditional([3, 8, 8], [8, 2], 2, fusion='film')
    x = torch.randn(2, 7, 3)
    batch = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    context = torch.randn(3, 2)
    weight = torch.rand(2, 7)
    out = module(x, context, batch, weight=weight)
    assert torch.allclose(out, torch.stack([
        module(x[i], context, batch, weight=weight[i]) for i in range(2)]),
        atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('aggr', ['sum', 'mean', 'max', 'softmax'])
def test_weighted_model_compiles_once_and_exports(aggr):
    torch._dynamo.reset()
    module = DeepSetsInvariant([3, 8, 8], [8, 2], aggr=aggr)
    compiled = torch.compile(module, fullgraph=True, dynamic=True)
    for sizes in ([3, 0, 4], [5, 1, 2, 2]):
        x, batch = make_batch(sizes, 3, shuffle=True)
        weight = torch.rand(x.size(0))
        expected = module(x, batch, dim_size=len(sizes), weight=weight)
        got = compiled(x, batch, dim_size=len(sizes), weight=weight)
        assert torch.allclose(got, expected, atol=1e-5)
    with torch._dynamo.config.patch(error_on_recompile=True):
        x, batch = make_batch([2, 6, 1], 3, shuffle=True)
        compiled(x, batch, dim_size=3, weight=torch.rand(x.size(0)))
    x, batch = make_batch([3, 0, 4], 3)
    weight = torch.rand(x.size(0))
    n = torch.export.Dim('n', min=2)
    program = torch.export.export(
        module, (x, batch), dict(dim_size=3, weight=weight),
        dynamic_shapes=((n, None), (n, ), None, (n, )))
    x, batch = make_batch([1, 5, 2], 3)
    weight = torch.rand(x.size(0))
    assert torch.allclose(program.module()(x, batch, dim_size=3,
                                           weight=weight),
                          module(x, batch, dim_size=3, weight=weight),
                          atol=1e-5)
    torch._dynamo.reset()


def test_a_weighted_readout_after_a_gnn():
    # PyG passes no weights to aggr= of a message-passing layer; as a
    # readout the model takes them from the caller.
    from torch_geometric.nn import GCNConv
    conv = GCNConv(3, 8)
    readout = DeepSetsInvariant([8, 8], [8, 2])
    x, batch = make_batch([3, 4], 3)
    edge_index = torch.tensor([[0, 1, 3, 4, 5], [1, 2, 4, 5, 6]])
    weight = torch.tensor([1, 0, 2, 1, 1, 0, 3])
    h = conv(x, edge_index)
    rows = torch.repeat_interleave(torch.arange(7), weight)
    assert torch.allclose(readout(h, batch, weight=weight),
                          readout(h[rows], batch[rows], dim_size=2),
                          atol=1e-5)
