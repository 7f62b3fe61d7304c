r"""NaN or Inf in one set's elements never leaks into other sets."""
import pytest
import torch

from tests.helpers import AGGRS, make_batch
from tests.integration.hardening.models import (
    KINDS,
    build,
    is_per_element,
    run,
)


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('aggr', AGGRS)
@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_nonfinite_stays_in_its_set(kind, aggr, bad):
    model = build(kind, aggr)
    x, batch = make_batch([4, 3, 5], 3, shuffle=True)
    x[(batch == 1).nonzero()[0, 0], 1] = bad
    x.requires_grad_()
    context = torch.randn(3, 2)
    out = run(model, kind, x, batch, 3, context)
    rows = batch if is_per_element(kind) else torch.arange(3)
    clean = rows != 1
    assert torch.isfinite(out[clean]).all()
    # Only the clean sets' outputs feed the loss: their gradients are finite.
    out[clean].sum().backward()
    assert torch.isfinite(x.grad[batch != 1]).all()
    # And the clean sets' outputs equal a run without the bad set.
    keep = batch != 1
    relabel = torch.tensor([0, -1, 1])[batch[keep]]
    alone = run(model, kind, x[keep].detach(), relabel, 2, context[[0, 2]])
    assert torch.allclose(alone, out[clean].detach(), atol=1e-5)
