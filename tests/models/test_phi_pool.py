r"""Pooling in front of phi's last affine layer: the same training step as
pooling phi's output (values, gradients, hooks), and phi's own call wherever
the rewrite would skip something the user configured on phi or its last
layer."""
import collections

import pytest
import torch

from tests.helpers import (
    GLOBAL_HOOKS,
    HOOKS,
    add_hook,
    make_batch,
    pooled_by_hand,
    ptr_of,
    replace_forward,
    training_step,
)
from torch_geometric.nn import MLP
from torch_geometric.nn.aggr import (
    MaxAggregation,
    MeanAggregation,
    SoftmaxAggregation,
    SumAggregation,
)
from torch_geometric.nn.dense.linear import Linear as PygLinear
from torch_geometric.utils import scatter
from torch_geometric_deepsets import DeepSetsInvariant, stream_encode
from torch_geometric_deepsets.models.mlp import SplitMLP
from torch_geometric_deepsets.models.phi_pool import fused_reduce
from torch_geometric_deepsets.testing import (
    TOLERANCES,
)

SIZES = [3, 5, 0, 4]

#: phi's of the three shapes whose last layer the rewrite reads.
PHIS = {
    'split': lambda: SplitMLP([3, 16, 8]),
    'sequential': lambda: torch.nn.Sequential(
        torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8)),
    'sequential_pyg': lambda: torch.nn.Sequential(
        torch.nn.Linear(3, 16), torch.nn.ReLU(), PygLinear(16, 8)),
}


def _last(phi):
    return phi.lin if isinstance(phi, SplitMLP) else phi[-1]


def _with_last(phi, lin):
    if isinstance(phi, SplitMLP):
        phi.lin = lin
    else:
        phi[-1] = lin
    return phi


def _linear(like, in_channels, out_channels, bias=True, cls=None):
    r"""A new layer of the family (torch or PyG) of :obj:`like`."""
    if isinstance(like, PygLinear):
        return (cls or PygLinear)(in_channels, out_channels, bias=bias)
    if in_channels < 0:
        return torch.nn.LazyLinear(out_channels, bias=bias)
    return (cls or torch.nn.Linear)(in_channels, out_channels, bias=bias)


class _DoubledTorch(torch.nn.Linear):
    def forward(self, x):
        return 2.0 * super().forward(x)


class _DoubledPyg(PygLinear):
    def forward(self, x):
        return 2.0 * super().forward(x)


def _halving(cls):
    return type(f'Halved{cls.__name__}', (cls, ), {
        'forward': lambda self, *args, **kwargs:
        0.5 * cls.forward(self, *args, **kwargs)})


_HALVED = {cls: _halving(cls) for cls in (SplitMLP, torch.nn.Sequential)}


def _plain(phi, calls):
    return phi


def _no_bias(phi, calls):
    return _with_last(phi, _linear(_last(phi), 16, 8, bias=False))


def _subclass(phi, calls):
    cls = _DoubledPyg if isinstance(_last(phi), PygLinear) else _DoubledTorch
    return _with_last(phi, _linear(_last(phi), 16, 8, cls=cls))


def _lazy(phi, calls):
    return _with_last(phi, _linear(_last(phi), -1, 8))


def _last_hook(kind):
    def configure(phi, calls):
        add_hook(_last(phi), kind, calls)
        return phi
    return configure


def _phi_hook(kind):
    def configure(phi, calls):
        add_hook(phi, kind, calls)
        return phi
    return configure


def _last_replaced(phi, calls):
    replace_forward(_last(phi), calls)
    return phi


def _phi_replaced(phi, calls):
    replace_forward(phi, calls)
    return phi


def _phi_subclass(phi, calls):
    # A subclass of SplitMLP or Sequential with a forward of its own.
    phi.__class__ = _HALVED[SplitMLP if isinstance(phi, SplitMLP)
                            else torch.nn.Sequential]
    return phi


def _dropout_before_last(phi, calls):
    # The rewrite stays exact: the masks fall on phi's hidden rows.
    if isinstance(phi, SplitMLP):
        phi.body.dropout[-1] = 0.5
        return phi
    return torch.nn.Sequential(*phi[:-1], torch.nn.Dropout(0.5), phi[-1])


def _dropout_after_last(phi, calls):
    return torch.nn.Sequential(*phi, torch.nn.Dropout(0.5))


def _cases(stream=False):
    settings = [('plain', _plain, False), ('no_bias', _no_bias, False),
                ('subclass', _subclass, False), ('lazy', _lazy, False),
                ('dropout_before_last', _dropout_before_last, False)]
    settings += [(f'last_{kind}_hook', _last_hook(kind), True)
                 for kind in HOOKS]
    settings += [(f'phi_{kind}_hook', _phi_hook(kind), True)
                 for kind in HOOKS]
    settings += [('last_forward_replaced', _last_replaced, True),
                 ('phi_forward_replaced', _phi_replaced, True),
                 ('phi_subclass', _phi_subclass, False)]
    cases = []
    for kind in PHIS:
        extra = [] if kind == 'split' else [
            ('dropout_after_last', _dropout_after_last, False)]
        for name, configure, called in settings + extra:
            if stream and name == 'phi_full_backward_hook':
                continue  # it sees the gradient of the chunks: none
            cases.append(pytest.param(kind, configure, called,
                                      id=f'{kind}-{name}'))
    return cases


def _build(kind, configure, aggr):
    torch.manual_seed(0)
    calls = collections.Counter()
    phi = configure(PHIS[kind](), calls)
    model = DeepSetsInvariant(phi, [8, 4, 1], aggr=aggr)
    return model.double(), calls


def _inputs():
    torch.manual_seed(1)
    return make_batch(SIZES, 3, dtype=torch.float64, shuffle=True)


def _pooled_phi(model, aggr):
    r"""The plain computation: phi called as a module, then pooled."""
    def forward(x, batch):
        return model.rho(scatter(model.phi(x), batch, 0, len(SIZES),
                                 reduce=aggr))
    return forward


@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('aggr', ['sum', 'mean'])
@pytest.mark.parametrize('kind,configure,called', _cases())
def test_one_setting_trains_as_phi_pooled(kind, configure, called, aggr,
                                          mode):
    x, batch = _inputs()
    model, calls = _build(kind, configure, aggr)
    got = training_step(model, lambda x, b: model(x, b, dim_size=len(SIZES)),
                        x, batch, mode == 'train')
    reference, plain_calls = _build(kind, configure, aggr)
    expected = training_step(reference, _pooled_phi(reference, aggr), x,
                             batch, mode == 'train')
    atol, rtol = TOLERANCES[torch.float64]
    torch.testing.assert_close(got, expected, atol=atol, rtol=rtol)
    assert calls == plain_calls
    assert bool(calls) == called


@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('kind,configure,called', _cases(stream=True))
def test_one_setting_streams_as_phi_pooled(kind, configure, called, mode):
    # The accumulator pools in front of the same layer (its state holds
    # phi's hidden rows). One chunk: the dropout masks are those of the
    # whole call. The stream runs phi twice (the state, then the replay in
    # backward), so hooks are compared by their effect on values only.
    x, batch = _inputs()
    model, _ = _build(kind, configure, 'sum')
    got = training_step(
        model, lambda x, b: stream_encode(model, [(x, b)], len(SIZES)),
        x, batch, mode == 'train')
    reference, _ = _build(kind, configure, 'sum')
    expected = training_step(reference, _pooled_phi(reference, 'sum'), x,
                             batch, mode == 'train')
    del got['x'], expected['x']  # no gradient flows into the chunks
    atol, rtol = TOLERANCES[torch.float64]
    torch.testing.assert_close(got, expected, atol=atol, rtol=rtol)


@pytest.mark.parametrize('kind', list(PHIS))
@pytest.mark.parametrize('configure', [_plain, _no_bias,
                                       _dropout_before_last])
def test_the_cases_compare_the_rewrite_with_phi_pooled(kind, configure):
    # Guards the cases above: the settings the rewrite can honour leave it
    # on, so those cases compare it with pooling phi's output.
    model, _ = _build(kind, configure, 'sum')
    assert fused_reduce(model.phi, model.aggr_module) == 'sum'


@pytest.mark.parametrize('kind', list(PHIS))
@pytest.mark.parametrize('hook', GLOBAL_HOOKS)
def test_global_hooks_see_every_module_of_phi_called(hook, kind):
    seen = {}

    def count(module, *args):
        name = seen['names'].get(id(module))
        if name is not None:
            seen['calls'].update([name or 'phi'])

    def run(build, forward):
        model, calls = build
        seen['names'] = {id(m): n for n, m in model.phi.named_modules()}
        seen['calls'] = calls
        return training_step(model, forward(model), *inputs), calls

    inputs = _inputs()
    handle = getattr(torch.nn.modules.module, GLOBAL_HOOKS[hook])(count)
    try:
        got, calls = run(_build(kind, _plain, 'sum'), lambda model: (
            lambda x, b: model(x, b, dim_size=len(SIZES))))
        expected, plain_calls = run(_build(kind, _plain, 'sum'),
                                    lambda model: _pooled_phi(model, 'sum'))
    finally:
        handle.remove()
    atol, rtol = TOLERANCES[torch.float64]
    torch.testing.assert_close(got, expected, atol=atol, rtol=rtol)
    assert calls == plain_calls


@pytest.mark.parametrize('aggr', ['sum', 'mean'])
@pytest.mark.parametrize('layout', ['index', 'ptr'])
def test_fused_path_equals_unfused(aggr, layout, kernel_path):
    model = DeepSetsInvariant([3, 32, 32, 16], [16, 8, 1], aggr=aggr,
                              dropout=0.2)
    assert fused_reduce(model.phi, model.aggr_module) == aggr
    x, batch = make_batch([5, 0, 1, 30, 2], 3, dtype=torch.float64)
    kwargs = dict(index=batch, dim_size=5) if layout == 'index' else dict(
        ptr=ptr_of(batch, 5))
    model = model.double().eval()
    fused = model(x, **kwargs)
    assert torch.allclose(fused, pooled_by_hand(model, x, batch, 5, aggr),
                          atol=1e-12)
    # Gradients agree too (the bias gets n_s, or [n_s > 0] for the mean).
    model(x, **kwargs).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    pooled_by_hand(model, x, batch, 5, aggr).sum().backward()
    for a, p in zip(grads, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-10)



def test_pooling_moves_in_front_of_an_affine_last_layer_only():
    lin = torch.nn.Linear(8, 4)
    assert fused_reduce(SplitMLP([3, 8, 4]), SumAggregation()) == 'sum'
    assert fused_reduce(SplitMLP([3, 4]), MeanAggregation()) == 'mean'
    assert fused_reduce(SplitMLP([3, 4]), MaxAggregation()) is None
    assert fused_reduce(SplitMLP([3, 4]), SoftmaxAggregation()) is None
    # The usual shape of mask-based code moved over.
    seq = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), lin)
    assert fused_reduce(seq, SumAggregation()) == 'sum'
    seq = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(),
                              PygLinear(8, 4))
    assert fused_reduce(seq, SumAggregation()) == 'sum'
    # Not when something follows the last linear layer (e.g. dropout, whose
    # rewrite would not be exact in training), for a subclass whose forward
    # may do more, for a PyG MLP instance (used whole), or a lazy layer.
    seq = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.5))
    assert fused_reduce(seq, SumAggregation()) is None

    class Scaled(torch.nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    assert fused_reduce(torch.nn.Sequential(Scaled(3, 4)),
                        SumAggregation()) is None
    assert fused_reduce(MLP([3, 8, 4]), SumAggregation()) is None
    assert fused_reduce(torch.nn.Sequential(PygLinear(-1, 4)),
                        SumAggregation()) is None



@pytest.mark.parametrize('aggr', ['sum', 'mean'])
def test_user_sequential_phi_is_fused_exactly(aggr):
    phi = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(),
                              torch.nn.Linear(16, 8)).double()
    model = DeepSetsInvariant(phi, [8, 2], aggr=aggr).double()
    x, batch = make_batch([4, 0, 7, 1], 3, dtype=torch.float64)
    out = model(x, batch, dim_size=4)
    assert torch.allclose(out, pooled_by_hand(model, x, batch, 4, aggr),
                          atol=1e-12)



def test_dropout_after_the_last_layer_keeps_the_unfused_path():
    # With dropout behind phi's last layer the rewrite would not be exact
    # while training: the model must pool phi's full output.
    phi = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 8), torch.nn.Dropout(0.5))
    model = DeepSetsInvariant(phi, [8, 2]).train()
    x, batch = make_batch([4, 5], 3)
    torch.manual_seed(1)
    out = model(x, batch)
    torch.manual_seed(1)
    expected = model.rho(scatter(phi(x), batch, 0, 2, 'sum'))
    assert torch.equal(out, expected)
