r"""The compiled paths, class by class: every public module of the package
compiles as one graph (:obj:`fullgraph=True, dynamic=True`) that equals
eager mode, forward and backward, and serves other set and element counts
without recompiling; it exports with dynamic set and element counts; and
without :obj:`dim_size` it gives the right result or a clear error, never a
guard failure. The README's claims about compiling are this table."""
import pytest
import torch
from torch.export import Dim

import torch_geometric_deepsets as T
from tests.public_modules import (
    CASES,
    MATRIX,
    F,
    public_module_classes,
    set_inputs,
)
from torch_geometric.nn import SAGEConv


@pytest.fixture(autouse=True)
def _dynamo():
    # Never fall back to eager silently, and draw random numbers as eager
    # mode does (JanossyPiSGD samples orderings).
    torch._dynamo.reset()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True,
                                    recompile_limit=4), \
            torch._inductor.config.patch(fallback_random=True):
        yield
    torch._dynamo.reset()


def test_every_public_module_is_in_the_matrix():
    assert public_module_classes() == set(MATRIX)


def outputs_and_grads(model, args, kwargs):
    torch.manual_seed(0)
    out = model(*args, **kwargs)
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()),
                                allow_unused=True)
    return out, grads


def assert_same(model, compiled, args, kwargs):
    expected, expected_grads = outputs_and_grads(model, args, kwargs)
    out, grads = outputs_and_grads(compiled, args, kwargs)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads, expected_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('case', CASES)
def test_compiles_whole_once_and_equals_eager(case):
    model = case.build()
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    assert_same(model, compiled, *set_inputs(case, [3, 0, 5, 1]))
    # Other set and element counts, and ptr: the same graph serves them.
    with torch._dynamo.config.patch(error_on_recompile=True):
        assert_same(model, compiled,
                    *set_inputs(case, [2, 7, 0, 0, 4, 1], seed=1))
    assert_same(model, compiled, *set_inputs(case, [4, 1, 0], 'ptr', seed=2))
    with torch._dynamo.config.patch(error_on_recompile=True):
        assert_same(model, compiled,
                    *set_inputs(case, [1, 6, 2, 0, 3], 'ptr', seed=3))


@pytest.mark.slow
@pytest.mark.parametrize('case', CASES)
def test_without_dim_size_compiles_and_exports(case):
    # The set count comes from the ids: data-dependent, never a guard
    # failure. Tracing decides this; the backend does not (aot_eager).
    model = case.build().eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=True,
                             backend='aot_eager')
    for seed, sizes in enumerate(([3, 1, 5], [2, 7, 4, 1])):
        args, kwargs = set_inputs(case, sizes, seed=seed, dim_size=False)
        torch.manual_seed(0)
        expected = model(*args)
        torch.manual_seed(0)
        torch.testing.assert_close(compiled(*args), expected, atol=1e-5,
                                   rtol=1e-5)
    args, _ = set_inputs(case, [3, 1, 5], dim_size=False)
    n = Dim('n', min=2)
    shapes = [{0: n}] + ([None] if case.context else []) + [{0: n}]
    program = torch.export.export(model, args, dynamic_shapes=shapes)
    args, _ = set_inputs(case, [2, 7, 4], seed=1, dim_size=False)
    torch.manual_seed(0)
    expected = model(*args)
    torch.manual_seed(0)
    torch.testing.assert_close(program.module()(*args), expected, atol=1e-5,
                               rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('case', CASES)
def test_exports_with_dynamic_elements_and_sets(case):
    model = case.build().eval()
    args, kwargs = set_inputs(case, [2, 0, 3, 4], 'ptr')
    n, b = Dim('n', min=2), Dim('b', min=2)
    shapes = {'x': {0: n}, 'ptr': {0: b + 1}}
    if case.context:
        shapes['context'] = {0: b}
    program = torch.export.export(model, args, kwargs, dynamic_shapes=shapes)
    for seed, sizes in enumerate(([5, 1], [1, 0, 0, 9, 2, 3])):
        args, kwargs = set_inputs(case, sizes, 'ptr', seed)
        torch.manual_seed(0)
        expected = model(*args, **kwargs)
        torch.manual_seed(0)
        torch.testing.assert_close(program.module()(*args, **kwargs),
                                   expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_recurrent_pisgd_is_an_upstream_limit():
    # Dynamo does not trace torch.nn.GRU/LSTM/RNN here: the README lists
    # JanossyPiSGD without k as eager only. When this starts to compile,
    # update the README and move the case into the matrix.
    model = T.JanossyPiSGD(torch.nn.GRU(F, 8), [8, 2])
    x, batch = torch.randn(6, F), torch.tensor([0, 0, 1, 1, 1, 2])
    compiled = torch.compile(model, fullgraph=True, dynamic=True,
                             backend='aot_eager')
    with pytest.raises(torch._dynamo.exc.Unsupported, match='RNN, GRU, or '
                       'LSTM'):
        compiled(x, batch)


@pytest.mark.slow
def test_inductor_fails_on_a_dynamic_randperm():
    # JanossyPiSGD shuffles rows by an argsort of uniform keys because
    # inductor fails on this randperm with dynamic shapes. When this test
    # fails, randperm compiles: JanossyPiSGD.sample may use it.
    def shuffle(x, index):
        order = torch.randperm(index.numel())
        order = order[torch.argsort(index[order], stable=True)]
        return x.index_select(0, order)

    compiled = torch.compile(shuffle, fullgraph=True, dynamic=True)
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed):
        compiled(torch.randn(7, 3), torch.tensor([0, 2, 1, 1, 0, 2, 2]))


@pytest.mark.slow
@pytest.mark.parametrize('aggr', [
    lambda: T.DeepSetsInvariant([4, 8], [8, 4]),
    lambda: ['max', T.DeepSetsInvariant([4, 8], [8, 4])],
])
def test_compiles_as_aggregation_of_sage_conv(aggr):
    conv = SAGEConv(4, 6, aggr=aggr())
    x = torch.randn(6, 4)
    edge_index = torch.tensor([[1, 2, 3, 4, 0, 5, 5], [0, 0, 1, 1, 2, 3, 0]])
    compiled = torch.compile(conv, fullgraph=True, dynamic=True,
                             backend='aot_eager')
    torch.testing.assert_close(compiled(x, edge_index), conv(x, edge_index),
                               atol=1e-6, rtol=1e-6)
