import pytest
import torch

from tests.helpers import AGGRS
from tests.integration.hardening.models import KINDS, build, run


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('aggr', AGGRS)
def test_gradcheck_with_empty_set_and_ties(kind, aggr):
    torch.manual_seed(0)
    model = build(kind, aggr, shallow_phi=True).double()
    # Dyadic weights and inputs make every product exact, so the duplicated
    # elements give bitwise-equal values at the pooling: real ties, not
    # near-ties split by one ulp of GEMM rounding.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.round(p * 64) / 64)
    # Distinct entries except one duplicated element: a two-way tie, where
    # the central difference and the even split of the gradient agree.
    x = (torch.randperm(21, dtype=torch.float64) / 8 - 1.25).view(7, 3)
    x[1] = x[0]
    batch = torch.tensor([0, 0, 0, 2, 2, 3, 3])  # set 1 is empty
    context = torch.round(torch.randn(4, 2, dtype=torch.float64) * 4) / 4
    x.requires_grad_()
    context.requires_grad_()
    params = tuple(model.parameters())

    def f(x, context, *weights):
        return run(model, kind, x, batch, 4, context)

    out = f(x, context)
    if aggr == 'max':  # the tie reaches the output: the test is meaningful
        assert out.requires_grad
    assert torch.autograd.gradcheck(f, (x, context) + params, atol=1e-6)


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('aggr', AGGRS)
def test_double_backward(kind, aggr):
    # create_graph=True, as for forces -dE/dx trained on, or gradient
    # penalties: the backward pass itself must be differentiable. Distinct
    # inputs (no ties), one empty set, tanh activations (nonzero curvature).
    torch.manual_seed(0)
    model = build(kind, aggr).double()
    x = (torch.randperm(21, dtype=torch.float64) / 8 - 1.25).view(7, 3)
    x.requires_grad_()
    batch = torch.tensor([0, 0, 0, 2, 2, 3, 3])

    def f(x):
        return run(model, kind, x, batch, 4)

    assert torch.autograd.gradgradcheck(f, (x, ), atol=1e-6)
