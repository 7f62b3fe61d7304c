r"""The custom operators that compiled CPU graphs use for max pooling and
the pooled affine layer (see ``_kernels.paths.cpu_graph``): their
registrations, and the property they exist for, that a compiled training
step keeps no boolean ReLU mask for its backward pass."""
import pytest
import torch

from tests.helpers import make_batch
from torch_geometric_deepsets import DeepSetsInvariant
from torch_geometric_deepsets._kernels.custom_ops import (
    pool_affine,
    pool_affine_weight_grad,
    segment_extreme,
    segment_extreme_backward,
)

OPS = 'torch_geometric_deepsets::'


@pytest.fixture(autouse=True)
def _dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def sets(sizes, channels=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h, index = make_batch(sizes, channels, shuffle=True, generator=gen)
    # A ReLU'd input, with ties and zeros as phi's hidden layers give.
    return h.relu(), index


@pytest.mark.parametrize('mean', [False, True])
@pytest.mark.parametrize('bias', [False, True])
def test_pool_affine_op_registration(mean, bias):
    h, index = sets([3, 0, 4, 1])
    weight = torch.randn(2, 5, requires_grad=True)
    b = torch.randn(2, requires_grad=True) if bias else None
    h.requires_grad_()
    # Schema, fake (meta) kernel against the real one, autograd formula.
    torch.library.opcheck(pool_affine, (h, weight, b, index, 4, mean))
    counts = torch.tensor([3., 0., 4., 1.])
    torch.library.opcheck(pool_affine_weight_grad,
                          (torch.randn(4, 2), h.detach(), index, counts,
                           mean))


@pytest.mark.parametrize('reduce', ['max', 'min'])
def test_segment_extreme_op_registration(reduce):
    h, index = sets([3, 0, 4, 1])
    torch.library.opcheck(segment_extreme,
                          (h.requires_grad_(), index, 4, reduce))
    out = segment_extreme(h.detach(), index, 4, reduce)
    torch.library.opcheck(segment_extreme_backward,
                          (torch.randn(4, 5), h.detach(), index, out))


@pytest.mark.slow
@pytest.mark.parametrize('aggr', ['sum', 'mean', 'max'])
def test_ops_give_the_eager_values_and_gradients(aggr):
    torch.manual_seed(0)
    model = DeepSetsInvariant([3, 8, 8], [8, 2], aggr=aggr)
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(9, 3, generator=gen)
    index = torch.tensor([0, 2, 2, 0, 3, 3, 3, 0, 2])
    grads = []
    for fn in (model, compiled):
        out = fn(x, index, dim_size=4)
        grads.append((out, torch.autograd.grad(out.sum(),
                                               model.parameters())))
    (out, expected), (out_c, got) = grads
    assert torch.equal(out_c, out)  # the same kernels, so the same bits
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-6)


def saved_dtypes(model, *args, **kwargs):
    r"""The dtypes of the tensors that a training step compiled by inductor
    saves for its backward pass."""
    saved = []
    compiled = torch.compile(model, fullgraph=True)
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t.dtype) or t, lambda t: t):
        out = compiled(*args, **kwargs)
    out.sum().backward()
    return saved


@pytest.mark.slow
@pytest.mark.parametrize('aggr', ['sum', 'mean', 'max'])
def test_compiled_step_saves_no_boolean_mask(aggr):
    # Inductor's CPU code stores a boolean ReLU mask ~10x slower than the
    # ReLU itself; the custom operators' backward passes take h so that the
    # partitioner keeps h and recomputes the mask from it.
    torch.manual_seed(0)
    model = DeepSetsInvariant([4, 16, 16], [16, 1], aggr=aggr)
    x = torch.randn(40, 4)
    index = torch.arange(40) // 10
    dtypes = saved_dtypes(model, x, index, dim_size=4)
    assert torch.float32 in dtypes
    assert torch.bool not in dtypes, dtypes


@pytest.mark.slow
def test_export_keeps_plain_aten_ops():
    # Exported programs run without this package imported.
    model = DeepSetsInvariant([3, 8, 8], [8, 2], aggr='sum').eval()
    x = torch.randn(7, 3)
    ptr = torch.tensor([0, 3, 3, 7])
    program = torch.export.export(model, (x, ), dict(ptr=ptr))
    targets = {str(n.target) for n in program.graph.nodes
               if n.op == 'call_function'}
    assert not any(t.startswith(OPS.replace('::', '.')) or OPS in t
                   for t in targets), targets
