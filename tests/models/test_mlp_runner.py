import pytest
import torch

from torch_geometric.nn import MLP
from torch_geometric_deepsets.models._utils import run_mlp


@pytest.mark.parametrize('kwargs', [
    dict(),  # ReLU straight after each linear layer: applied in place
    dict(norm='batch_norm'),  # ReLU after the norm: out of place
    dict(norm='layer_norm', act_first=True),
    dict(act='tanh'),
    dict(act='leaky_relu', plain_last=False),
    dict(act=torch.nn.ReLU(inplace=True)),
])
def test_run_mlp_equals_mlp_forward_with_gradients(kwargs):
    torch.manual_seed(0)
    kwargs.setdefault('norm', None)
    mlp = MLP([3, 8, 8, 4], **kwargs).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = run_mlp(mlp, x1, None, None)
    expected = mlp(x2)
    assert torch.allclose(out, expected, atol=1e-12)

    grad = torch.randn_like(out)
    out.backward(grad)
    ours = [p.grad.clone() for p in mlp.parameters()]
    mlp.zero_grad()
    expected.backward(grad)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-12)
    for a, p in zip(ours, mlp.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-12)


def test_run_mlp_stops_before_the_last_layer():
    mlp = MLP([3, 8, 4], norm=None)
    x = torch.randn(5, 3)
    hidden = run_mlp(mlp, x, None, None, skip_last=True)
    assert torch.allclose(mlp.lins[-1](hidden), mlp(x), atol=1e-6)


def test_in_place_relu_supports_double_backward():
    torch.manual_seed(0)
    mlp = MLP([3, 8, 8, 2], norm=None).double()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(
        lambda t: run_mlp(mlp, t, None, None), (x, ))
