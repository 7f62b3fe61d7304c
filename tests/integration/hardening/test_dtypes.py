import pytest
import torch

from tests.helpers import AGGRS, make_batch
from tests.integration.hardening.models import KINDS, build, run
from torch_geometric.testing import withDevice
from torch_geometric_deepsets.testing import (
    RELATIVE_TOLERANCES,
    relative_error,
)


@withDevice
@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('aggr', AGGRS)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16,
                                   torch.float64])
def test_dtype_matches_float32(kind, aggr, dtype, device):
    torch.manual_seed(0)
    x, batch = make_batch([5, 0, 1, 9], 3)
    x, batch = x.to(device), batch.to(device)
    ref = build(kind, aggr).to(device)
    model = build(kind, aggr).to(device)
    model.load_state_dict(ref.state_dict())
    model = model.to(dtype)

    xr = x.clone().requires_grad_()
    xl = x.to(dtype).requires_grad_()
    out_ref = run(ref, kind, xr, batch, 4)
    out = run(model, kind, xl, batch, 4)
    assert out.dtype == dtype
    assert relative_error(out, out_ref) < RELATIVE_TOLERANCES[dtype]
    out_ref.square().sum().backward()
    out.float().square().sum().backward()
    assert xl.grad.dtype == dtype and torch.isfinite(xl.grad).all()
    assert relative_error(xl.grad, xr.grad) < 2 * RELATIVE_TOLERANCES[dtype]


@withDevice
@pytest.mark.parametrize('kind', KINDS)
def test_autocast(kind, device):
    dtype = torch.bfloat16 if device.type == 'cpu' else torch.float16
    model = build(kind, 'mean').to(device)
    x, batch = make_batch([4, 0, 3], 3)
    x, batch = x.to(device).requires_grad_(), batch.to(device)
    ref = run(model, kind, x, batch, 3)
    with torch.autocast(device.type, dtype=dtype):
        out = run(model, kind, x, batch, 3)
    assert out.dtype == dtype  # the linear layers ran in low precision
    assert relative_error(out, ref) < RELATIVE_TOLERANCES[dtype]
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
