r"""torch.compile and torch.export, the supported ways to compile and deploy:
whole graphs without breaks, and the same outputs as eager mode."""
import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.export import Dim

from tests.test_device_path import MODELS
from torch_geometric.nn import SAGEConv
from torch_geometric.nn.aggr import SoftmaxAggregation
from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsInvariant,
)

AGGRS = {
    'sum': lambda: 'sum',
    'mean': lambda: 'mean',
    'max': lambda: 'max',
    'list': lambda: ['sum', 'max'],
    'softmax': lambda: SoftmaxAggregation(learn=True),
}


@pytest.fixture(autouse=True)
def _dynamo():
    # Never fall back to eager silently: a test comparing a compiled model
    # with eager mode would then pass for the wrong reason.
    torch._dynamo.reset()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True,
                                    recompile_limit=32):
        yield
    torch._dynamo.reset()


def build(name, aggr):
    torch.manual_seed(0)
    if aggr == 'list' and name in ('invariant', 'conditional_concat',
                                   'conditional_film', 'conditional_add'):
        # rho takes the concatenated width
        if name == 'invariant':
            return DeepSetsInvariant([3, 8, 8], [16, 2], aggr=['sum', 'max'])
        fusion = name.split('_')[1]
        return DeepSetsConditional([3, 8, 8], [16, 2], context_channels=2,
                                   fusion=fusion, aggr=['sum', 'max'])
    return MODELS[name](AGGRS[aggr]())


#: A tied layer and the point-cloud head keep the width, which a list of
#: aggregations (concatenated) does not.
CASES = [(name, aggr) for name in MODELS for aggr in AGGRS
         if not (aggr == 'list' and name in ('layer_tied', 'point_cloud'))]


def inputs(name, sizes, layout, shuffle_seed=0):
    gen = torch.Generator().manual_seed(shuffle_seed)
    counts = torch.tensor(sizes, dtype=torch.long)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), counts)
    x = torch.randn(batch.numel(), 3, generator=gen)
    args = (x, )
    if name.startswith('conditional'):
        args = (x, torch.randn(len(sizes), 2, generator=gen))
    if layout == 'ptr':
        ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        return args, dict(ptr=ptr)
    perm = torch.randperm(batch.numel(), generator=gen)
    args = (x[perm], ) + args[1:]
    return args + (batch[perm], ), dict(dim_size=len(sizes))


@pytest.mark.parametrize('layout', ['index', 'ptr'])
@pytest.mark.parametrize('name,aggr', CASES)
def test_no_graph_breaks(name, aggr, layout):
    model = build(name, aggr)
    args, kwargs = inputs(name, [2, 0, 3, 1], layout)
    explained = torch._dynamo.explain(model)(*args, **kwargs)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.parametrize('aggr', [
    lambda: DeepSetsInvariant([4, 8], [8, 4]),
    lambda: ['max', DeepSetsInvariant([4, 8], [8, 4])],
])
def test_no_graph_breaks_as_aggregation_of_sage_conv(aggr):
    conv = SAGEConv(4, 6, aggr=aggr())
    x = torch.randn(6, 4)
    edge_index = torch.tensor([[1, 2, 3, 4, 0, 5, 5], [0, 0, 1, 1, 2, 3, 0]])
    explained = torch._dynamo.explain(conv)(x, edge_index)
    assert explained.graph_break_count == 0, explained.break_reasons
    compiled = torch.compile(conv, fullgraph=True, dynamic=True,
                             backend='aot_eager')
    assert torch.allclose(compiled(x, edge_index), conv(x, edge_index),
                          atol=1e-6)


@functools.lru_cache(maxsize=None)
def compiled_model(name, aggr):
    model = build(name, aggr)
    return model, torch.compile(model, fullgraph=True, dynamic=True,
                                backend='aot_eager')


sizes_lists = st.lists(st.integers(0, 6), min_size=1, max_size=6)


@settings(max_examples=15, deadline=None)
@given(sizes=sizes_lists, layout=st.sampled_from(['index', 'ptr']),
       seed=st.integers(0, 1000))
@pytest.mark.parametrize('aggr', list(AGGRS))
@pytest.mark.parametrize('name', ['invariant', 'layer', 'equivariant',
                                  'equivariant_readout', 'conditional_film',
                                  'conditional_concat'])
def test_compiled_equals_eager(name, aggr, sizes, layout, seed):
    model, compiled = compiled_model(name, aggr)
    args, kwargs = inputs(name, sizes, layout, seed)
    expected = model(*args, **kwargs)
    out = compiled(*args, **kwargs)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize('name,aggr', [('invariant', 'sum'),
                                       ('invariant', 'mean'),
                                       ('equivariant_readout', 'max')])
def test_inductor_training_step_equals_eager(name, aggr):
    # The default backend (C++ code on the CPU, Triton on GPUs), forward and
    # backward, with an empty set, unsorted ids and ptr.
    model = build(name, aggr)
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    for sizes in ([3, 0, 5, 1], [2, 7, 0, 0, 4]):
        for layout in ('index', 'ptr'):
            args, kwargs = inputs(name, sizes, layout)
            expected = model(*args, **kwargs)
            grads = torch.autograd.grad(expected.sum(), model.parameters())
            out = compiled(*args, **kwargs)
            assert torch.allclose(out, expected, atol=1e-6)
            for a, b in zip(torch.autograd.grad(out.sum(),
                                                model.parameters()), grads):
                assert torch.allclose(a, b, atol=1e-5)


N, B = Dim('N', min=2, max=1 << 20), Dim('B', min=2, max=1 << 16)


@pytest.mark.parametrize('aggr', ['sum', 'mean', 'max'])
@pytest.mark.parametrize('name', ['invariant', 'equivariant',
                                  'equivariant_readout', 'conditional_film'])
def test_export_with_dynamic_elements_and_sets(name, aggr):
    model = build(name, aggr).eval()
    args, kwargs = inputs(name, [2, 0, 3, 4], 'ptr')
    shapes = {'x': {0: N}, 'ptr': {0: B + 1}}
    if name.startswith('conditional'):
        shapes['context'] = {0: B}
    program = torch.export.export(model, args, kwargs, dynamic_shapes=shapes)
    for sizes in ([5, 1], [1, 0, 0, 9, 2, 3]):
        args, kwargs = inputs(name, sizes, 'ptr', 1)
        assert torch.allclose(program.module()(*args, **kwargs),
                              model(*args, **kwargs), atol=1e-6)
