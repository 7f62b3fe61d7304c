import pytest
import torch

from tests.helpers import AGGRS, make_batch
from tests.integration.hardening.models import KINDS, build, run
from torch_geometric.testing import withDevice


@pytest.fixture
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


def train_steps(kind, aggr, device, steps=3):
    torch.manual_seed(7)
    model = build(kind, aggr).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, batch = make_batch([6, 0, 3, 11], 3, shuffle=True)
    x, batch = x.to(device), batch.to(device)
    for _ in range(steps):
        opt.zero_grad()
        run(model, kind, x, batch, 4).square().mean().backward()
        opt.step()
    return [p.detach().cpu().clone() for p in model.parameters()]


@withDevice
@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('aggr', AGGRS)
def test_identical_training_steps_give_bitwise_identical_parameters(
        kind, aggr, device, deterministic):
    first = train_steps(kind, aggr, device)
    second = train_steps(kind, aggr, device)
    assert len(first) > 0
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    # The steps did train: parameters moved away from their initial values.
    torch.manual_seed(7)
    initial = [p.detach().cpu() for p in build(kind, aggr).parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(first, initial))
