r"""The same model gives the same results on a GPU as on the CPU."""
import pytest
import torch

from tests.helpers import AGGRS, make_batch
from tests.integration.hardening.models import KINDS, build, run
from torch_geometric.testing import onlyCUDA


@onlyCUDA
@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('aggr', AGGRS)
@pytest.mark.parametrize('layout', ['sorted', 'unsorted', 'ptr'])
def test_cuda_matches_cpu(kind, aggr, layout):
    model = build(kind, aggr).double()
    gpu = build(kind, aggr).double().cuda()
    gpu.load_state_dict(model.state_dict())
    x, batch = make_batch([5, 0, 1, 40, 3], 3, dtype=torch.float64,
                          shuffle=layout == 'unsorted')
    results = []
    for m, device in ((model, 'cpu'), (gpu, 'cuda')):
        xi = x.detach().to(device).requires_grad_()
        b = batch.to(device)
        if layout == 'ptr' and not kind.startswith('conditional'):
            ptr = torch.tensor([0, 5, 5, 6, 46, 49], device=device)
            out = m(xi, ptr=ptr)
        else:
            out = run(m, kind, xi, b, 5)
        out.square().sum().backward()
        results.append((out.detach().cpu(), xi.grad.cpu(),
                        [p.grad for p in m.parameters()]))
    (o1, g1, p1), (o2, g2, p2) = results
    assert torch.allclose(o1, o2, atol=1e-10)
    assert torch.allclose(g1, g2, atol=1e-10)
    for a, b in zip(p1, p2):
        assert (a is None) == (b is None)  # unused parameters on both
        if a is not None:
            assert torch.allclose(a, b.cpu(), atol=1e-9)
