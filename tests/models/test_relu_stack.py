r"""The ReLU stack that runs PyG MLPs of phi without PyG's module calls:
the same function and gradients as the MLP itself (double backward
included), and the MLP's own call wherever the shortcut would differ."""
import collections

import pytest
import torch

from tests.helpers import (
    GLOBAL_HOOKS,
    HOOKS,
    Count,
    add_hook,
    make_batch,
    replace_forward,
    training_step,
)
from torch_geometric.nn import MLP
from torch_geometric.nn.dense.linear import Linear as PygLinear
from torch_geometric.utils import scatter
from torch_geometric_deepsets import DeepSetsInvariant
from torch_geometric_deepsets.models.mlp import SplitMLP
from torch_geometric_deepsets.models.relu_stack import (
    relu_stack,
    relu_stack_applies,
)
from torch_geometric_deepsets.models.widths import out_channels_of
from torch_geometric_deepsets.testing import TOLERANCES

CASES = [
    # channels, plain_last, bias: a narrow first layer takes its bias as an
    # input column ([3, 32, ...]); a wide one ([16, 32, ...]) adds it and
    # carries the next layer's bias out as a column of ones.
    ([3, 32, 32], False, True),
    ([3, 32, 32, 8], True, True),
    ([16, 32, 32], False, True),
    ([3, 32], True, True),
    ([3, 32, 32], False, False),
    # Layers without a bias: no column of ones carried into them, a zero
    # bias under the column carried out of them.
    ([3, 32, 32, 32, 8], True, [True, False, True, True]),
    ([16, 32, 32, 8], False, [False, True, True]),
]


def _grads(fn, mlp, x):
    return torch.autograd.grad(fn(x).square().sum(),
                               list(mlp.parameters()) + [x])


@pytest.mark.parametrize('shape', [(7, ), (2, 7), (0, )])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('channels,plain_last,bias', CASES)
def test_equals_the_mlp_values_and_gradients(channels, plain_last, bias,
                                             dtype, shape):
    torch.manual_seed(0)
    mlp = MLP(channels, norm=None, plain_last=plain_last, bias=bias)
    mlp = mlp.to(dtype)
    assert relu_stack_applies(mlp)
    # A matrix, leading dimensions (the [*, N, F] input) and no rows.
    x = torch.randn(*shape, channels[0], dtype=dtype, requires_grad=True)
    tol = dict(atol=1e-6, rtol=1e-5) if dtype == torch.float32 else \
        dict(atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(relu_stack(mlp, x), mlp(x), **tol)
    for mine, theirs in zip(_grads(lambda t: relu_stack(mlp, t), mlp, x),
                            _grads(mlp, mlp, x)):
        torch.testing.assert_close(mine, theirs, **tol)


def test_the_bias_column_matters():
    # Guards the test above: a stack that dropped the folded bias would be
    # far from the MLP, not within rounding.
    torch.manual_seed(0)
    mlp = MLP([3, 32, 32], norm=None, plain_last=False)
    with torch.no_grad():
        mlp.lins[0].bias.fill_(5.0)
    x = torch.randn(9, 3)
    assert (relu_stack(mlp, x) - mlp(x)).abs().max() < 1e-4
    with torch.no_grad():
        mlp.lins[0].bias.zero_()
    assert (relu_stack(mlp, x) - mlp(x)).abs().max() < 1e-4


def test_double_backward_through_the_model():
    # Gradient penalties differentiate the input gradient: the in-place
    # ReLUs and the bias column are ordinary differentiable operations.
    torch.manual_seed(0)
    model = DeepSetsInvariant([3, 32, 32, 16], [16, 1]).double()
    reference = DeepSetsInvariant([3, 32, 32, 16], [16, 1]).double()
    reference.load_state_dict(model.state_dict())
    reference.phi.body.register_forward_hook(lambda *args: None)
    assert not relu_stack_applies(reference.phi.body)
    x = torch.randn(11, 3, dtype=torch.float64, requires_grad=True)
    batch = torch.tensor([0] * 4 + [1] * 7)

    def penalty(net):
        out = net(x, batch, dim_size=2).sum()
        grad_x, = torch.autograd.grad(out, x, create_graph=True)
        return torch.autograd.grad(grad_x.square().sum(),
                                   list(net.parameters()),
                                   materialize_grads=True)

    for mine, theirs in zip(penalty(model), penalty(reference)):
        torch.testing.assert_close(mine, theirs, atol=1e-12, rtol=1e-10)


def _mlp(**kwargs):
    torch.manual_seed(0)
    return MLP([3, 32, 32], plain_last=False, **{'norm': None, **kwargs})


class _SubMLP(MLP):
    pass


@pytest.mark.parametrize('make,why', [
    (lambda: _mlp(act='tanh'), 'another activation'),
    (lambda: _mlp(act='leaky_relu'), 'another activation'),
    (lambda: _mlp(norm='batch_norm'), 'a normalisation'),
    (lambda: _mlp(dropout=0.5), 'dropout in training'),
    (lambda: MLP([-1, 32, 32], norm=None), 'a lazy first layer'),
    (lambda: _SubMLP([3, 32, 32], norm=None), 'a subclass'),
])
def test_the_mlp_runs_itself_where_the_stack_would_differ(make, why):
    assert not relu_stack_applies(make()), why


def test_dropout_in_eval_mode_takes_the_stack():
    mlp = _mlp(dropout=0.5)
    assert not relu_stack_applies(mlp)
    assert relu_stack_applies(mlp.eval())


@pytest.mark.parametrize('where', ['layer', 'act', 'mlp'])
@pytest.mark.parametrize('kind', ['forward', 'forward_pre', 'full_backward'])
def test_hooks_see_the_layers_called(where, kind):
    # A user who hooks a layer of phi (feature extraction, Lightning's model
    # summary) gets the MLP's own calls, whose hooks fire.
    torch.manual_seed(0)
    model = DeepSetsInvariant([3, 32, 32, 16], [16, 1])
    body = model.phi.body
    module = {'layer': body.lins[0], 'act': body.act, 'mlp': body}[where]
    seen = []
    if kind == 'forward_pre':
        module.register_forward_pre_hook(lambda *args: seen.append(1))
    else:
        getattr(module, f'register_{kind}_hook')(
            lambda *args: seen.append(1))
    model(torch.randn(5, 3), torch.tensor([0, 0, 1, 1, 1])).sum().backward()
    assert seen


def test_global_hooks_see_the_layers_called():
    torch.manual_seed(0)
    model = DeepSetsInvariant([3, 32, 32, 16], [16, 1])
    seen = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, *args: seen.append(module))
    try:
        model(torch.randn(5, 3), torch.tensor([0, 0, 1, 1, 1]))
    finally:
        handle.remove()
    assert model.phi.body.lins[0] in seen and model.phi.body.act in seen
    assert relu_stack_applies(model.phi.body)


def test_a_forward_replaced_on_a_layer_is_called():
    # Offloading and adapter tools replace forward on the instance.
    torch.manual_seed(0)
    model = DeepSetsInvariant([3, 32, 32, 16], [16, 1])
    x, batch = torch.randn(5, 3), torch.tensor([0, 0, 1, 1, 1])
    lin = model.phi.body.lins[1]
    original = lin.forward
    lin.forward = lambda inp: original(inp) * 0.0
    assert not relu_stack_applies(model.phi.body)
    expected = model.rho(model.phi.lin(torch.zeros(2, 32)) * torch.tensor(
        [[2.0], [3.0]]))
    torch.testing.assert_close(model(x, batch), expected)


def test_an_overflowing_half_row_stays_what_the_mlp_gives():
    # 0 * inf in a carried column of ones would make the row NaN: half
    # precisions (which overflow at 65,504) add their biases as the MLP does.
    mlp = MLP([16, 8, 8, 2], norm=None).half()
    with torch.no_grad():
        mlp.lins[0].weight.fill_(1.0)
        mlp.lins[0].bias.zero_()
        mlp.lins[1].weight.fill_(-1.0)
    x = torch.full((2, 16), 6000.0, dtype=torch.half)  # sums overflow
    assert torch.isfinite(mlp(x)).all()
    torch.testing.assert_close(relu_stack(mlp, x), mlp(x))
    mlp, x = mlp.float(), x.float()
    with torch.autocast('cpu', dtype=torch.float16):
        assert torch.isfinite(mlp(x)).all()
        torch.testing.assert_close(relu_stack(mlp, x), mlp(x))


@pytest.mark.parametrize('layout', ['coo', 'csr'])
def test_sparse_elements(layout):
    torch.manual_seed(0)
    model = DeepSetsInvariant([3, 32, 32, 16], [16, 1])
    x, batch = torch.randn(5, 3), torch.tensor([0, 0, 1, 1, 1])
    sparse = x.to_sparse() if layout == 'coo' else x.to_sparse_csr()
    torch.testing.assert_close(model(sparse, batch), model(x, batch))


@pytest.mark.parametrize('aggr', ['sum', 'max'])
def test_the_models_phi_takes_the_stack(aggr):
    # phi's hidden ReLUs run in place (the saving the CPU benchmark
    # measures) whether pooling moves in front of phi's last layer (sum) or
    # not (max). rho runs on the B pooled rows, through the MLP's own call.
    model = DeepSetsInvariant([3, 32, 32, 16], [16, 8, 1], aggr=aggr)
    with Count() as counter:
        model(torch.randn(6, 3), torch.tensor([0, 0, 0, 1, 1, 1]))
    assert counter.ops['aten.relu_'] == 2
    assert counter.ops['aten.relu'] == 1


def test_no_element_level_product_fills_a_bias_on_the_cpu():
    # The saving the CPU benchmark measures: every product over the N
    # elements is a plain mm (the bias rides in it), and no bias gradient
    # is a sum over the N rows.
    torch.manual_seed(0)
    model = DeepSetsInvariant([3, 32, 32, 16], [16, 8, 1])
    x = torch.randn(100, 3, requires_grad=True)
    with Count() as counter:
        model(x, torch.arange(100) // 10).sum().backward()
    over_rows = [(name, shapes) for name, shapes in counter.calls
                 if any(100 in shape for shape in shapes)]
    assert any(name == 'aten.mm' for name, _ in over_rows)
    assert not [call for call in over_rows if call[0] == 'aten.addmm']
    assert not [call for call in over_rows if call[0] == 'aten.sum']


# One setting on one layer ####################################################
# The stack's fallback condition reads settings of every layer of the MLP
# (dropout and normalisation per layer, every module's hooks and forward,
# every Linear's class and initialisation, every bias). Each case below puts
# ONE setting on ONE layer or module of a three-layer MLP and compares a
# training step (the output under a fixed seed, so that dropout masks match;
# every gradient; the running statistics; every hook and forward call) with
# the same network called as PyG's MLP, in training and in eval mode.

WIDTH = 16
BODY = [3, WIDTH, WIDTH, WIDTH]  # three Linear layers
SIZES = [3, 5, 4]


class _Doubled(PygLinear):
    def forward(self, x):
        return 2.0 * super().forward(x)


def _module(mlp, where, i):
    if where == 'lin':
        return mlp.lins[i]
    if where == 'norm':
        return mlp.norms[i]
    return mlp.act if where == 'act' else mlp


def _dropout(mlp, where, i, calls):
    mlp.dropout[i] = 0.5


def _layer_norm(mlp, where, i, calls):
    mlp.norms[i] = torch.nn.LayerNorm(WIDTH)


def _batch_norm(mlp, where, i, calls):
    norm = torch.nn.BatchNorm1d(WIDTH)
    with torch.no_grad():  # eval mode then differs from the identity
        norm.running_mean.uniform_(-1.0, 1.0)
        norm.running_var.uniform_(0.5, 2.0)
    mlp.norms[i] = norm


def _lazy(mlp, where, i, calls):
    mlp.lins[i] = PygLinear(-1, mlp.lins[i].out_channels)


def _subclass(mlp, where, i, calls):
    lin = mlp.lins[i]
    mlp.lins[i] = _Doubled(lin.in_channels, lin.out_channels)


def _no_bias(mlp, where, i, calls):
    lin = mlp.lins[i]
    mlp.lins[i] = PygLinear(lin.in_channels, lin.out_channels, bias=False)


def _hook(kind):
    def configure(mlp, where, i, calls):
        add_hook(_module(mlp, where, i), kind, calls)
    return configure


def _replaced_forward(mlp, where, i, calls):
    replace_forward(_module(mlp, where, i), calls)


def _per_layer_cases():
    cases = []
    for plain_last in (False, True):
        last = 'plain_last' if plain_last else 'act_last'
        layers = range(len(BODY) - 1)
        norms = range(len(BODY) - 1 - plain_last)
        settings = [('dropout', _dropout, 'lin', layers),
                    ('layer_norm', _layer_norm, 'norm', norms),
                    ('batch_norm', _batch_norm, 'norm', norms),
                    ('lazy', _lazy, 'lin', layers),
                    ('subclass', _subclass, 'lin', layers),
                    ('no_bias', _no_bias, 'lin', layers)]
        modules = [('lin', layers), ('norm', norms), ('act', [None]),
                   ('mlp', [None])]
        for kind in HOOKS:
            settings += [(f'{kind}_hook', _hook(kind), where, positions)
                         for where, positions in modules]
        settings += [('forward_replaced', _replaced_forward, where, positions)
                     for where, positions in modules]
        for name, configure, where, positions in settings:
            for i in positions:
                at = where if i is None else f'{where}{i}'
                # Hooks and replaced forwards must be called.
                called = name.endswith(('_hook', '_replaced'))
                cases.append(pytest.param(plain_last, configure, where, i,
                                          called, id=f'{last}-{name}-{at}'))
    return cases


#: How the model reaches the MLP, with the pooling that takes that path:
#: phi is the MLP (run()); phi is a SplitMLP around it, called whole
#: (SplitMLP.hidden, under max pooling) or in front of pooling before its
#: last layer (sum).
ROUTES = {'mlp': 'sum', 'hidden': 'max', 'pooled': 'sum'}


def _build(route, plain_last, configure, where, i):
    torch.manual_seed(0)
    mlp = MLP(BODY, norm=None, plain_last=plain_last)
    calls = collections.Counter()
    configure(mlp, where, i, calls)
    if route == 'mlp':
        phi, plain = mlp, mlp
    else:
        phi = SplitMLP(BODY + [8])
        phi.body = mlp

        def plain(x):
            return phi.lin(mlp(x))

    width = out_channels_of(phi)
    model = DeepSetsInvariant(phi, [width, 4, 1], aggr=ROUTES[route])
    return model.double(), plain, calls


def _compare_with_the_plain_mlp(route, plain_last, configure, where, i,
                                mode):
    aggr, train = ROUTES[route], mode == 'train'
    torch.manual_seed(1)
    x, batch = make_batch(SIZES, BODY[0], dtype=torch.float64, shuffle=True)
    model, _, calls = _build(route, plain_last, configure, where, i)
    got = training_step(model, lambda x, b: model(x, b, dim_size=len(SIZES)),
                        x, batch, train)
    reference, plain, plain_calls = _build(route, plain_last, configure,
                                           where, i)
    expected = training_step(reference, lambda x, b: reference.rho(scatter(
        plain(x), b, 0, len(SIZES), reduce=aggr)), x, batch, train)
    atol, rtol = TOLERANCES[torch.float64]
    torch.testing.assert_close(got, expected, atol=atol, rtol=rtol)
    assert calls == plain_calls
    return calls


@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('route', list(ROUTES))
@pytest.mark.parametrize('plain_last,configure,where,i,called',
                         _per_layer_cases())
def test_one_setting_on_one_layer_trains_as_the_mlp(plain_last, configure,
                                                    where, i, called, route,
                                                    mode):
    calls = _compare_with_the_plain_mlp(route, plain_last, configure, where,
                                        i, mode)
    # The hook or forward ran, as often in both calls.
    assert bool(calls) == called


def _nothing(mlp, where, i, calls):
    pass


@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('route', list(ROUTES))
@pytest.mark.parametrize('plain_last', [False, True])
@pytest.mark.parametrize('configure', [_nothing, _no_bias, _dropout])
def test_the_cases_compare_the_stack_with_the_mlp(configure, plain_last,
                                                 route, mode):
    # Guards the cases above: where nothing that the stack cannot do is
    # set (no setting, a layer without bias, dropout in eval mode), the
    # model takes the stack, so they compare it with PyG's MLP.
    model, _, _ = _build(route, plain_last, configure, 'lin', 1)
    model.train(mode == 'train')
    mlp = model.phi if route == 'mlp' else model.phi.body
    expected = configure is not _dropout or mode == 'eval'
    assert relu_stack_applies(mlp) == expected
    _compare_with_the_plain_mlp(route, plain_last, configure, 'lin', 1, mode)


@pytest.mark.parametrize('route', list(ROUTES))
@pytest.mark.parametrize('kind', list(GLOBAL_HOOKS))
def test_global_hooks_see_every_layer_called(kind, route):
    # A hook on every module (profilers, debuggers) sees each layer of the
    # MLP as often as when the MLP runs itself.
    seen = {}

    def hook(module, *args):
        name = seen['names'].get(id(module))
        if name is not None:
            seen['calls'].update([name])

    def counted(build):
        model, plain, calls = build
        mlp = model.phi if route == 'mlp' else model.phi.body
        seen['names'] = {id(m): name for name, m in mlp.named_modules()}
        seen['calls'] = calls
        return model, plain, calls

    aggr = ROUTES[route]
    torch.manual_seed(1)
    x, batch = make_batch(SIZES, BODY[0], dtype=torch.float64, shuffle=True)
    handle = getattr(torch.nn.modules.module, GLOBAL_HOOKS[kind])(hook)
    try:
        model, _, calls = counted(_build(route, False, _nothing, None, None))
        got = training_step(
            model, lambda x, b: model(x, b, dim_size=len(SIZES)), x, batch)
        reference, plain, plain_calls = counted(
            _build(route, False, _nothing, None, None))
        expected = training_step(reference, lambda x, b: reference.rho(
            scatter(plain(x), b, 0, len(SIZES), reduce=aggr)), x, batch)
    finally:
        handle.remove()
    atol, rtol = TOLERANCES[torch.float64]
    torch.testing.assert_close(got, expected, atol=atol, rtol=rtol)
    assert calls == plain_calls
    assert {'lins.0', 'lins.2', 'act', 'norms.1'} <= set(calls)
