r"""The fast path of plain ReLU networks: :func:`relu_stack` computes what a
PyG :class:`~torch_geometric.nn.models.MLP` of ReLU layers computes, in
fewer passes over each activation, wherever :func:`relu_stack_applies` says
nothing the user configured would be skipped."""
import torch
from torch import Tensor

from torch_geometric.nn import MLP
from torch_geometric.nn.dense.linear import Linear as PygLinear


def hooked(module: torch.nn.Module) -> bool:
    r"""Whether calling :obj:`module` does more than its class's
    :meth:`forward`: hooks, or a :meth:`forward` replaced on the instance
    (as offloading and adapter tools do)."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or module._backward_hooks or module._backward_pre_hooks
                or 'forward' in vars(module))


def global_hooks() -> bool:
    hooks = torch.nn.modules.module
    return any(getattr(hooks, name, None) for name in (
        '_global_forward_hooks', '_global_forward_pre_hooks',
        '_global_backward_hooks', '_global_backward_pre_hooks'))


def relu_stack_applies(mlp: torch.nn.Module) -> bool:
    r"""Whether :func:`relu_stack` computes what :obj:`mlp(x)` computes: a
    PyG :class:`MLP` (not a subclass, whose :meth:`forward` may do more) of
    initialised PyG :class:`Linear` layers with a :class:`~torch.nn.ReLU`
    activation, no normalisation, no dropout in training, and no hooks or
    instance-level :meth:`forward` that would expect to see its layers
    called (pinned by ``tests/models/test_relu_stack.py``)."""
    if type(mlp) is not MLP or type(mlp.act) is not torch.nn.ReLU:
        return False
    if any(type(norm) is not torch.nn.Identity for norm in mlp.norms):
        return False
    if mlp.training and any(p > 0 for p in mlp.dropout):
        return False
    for lin in mlp.lins:
        if type(lin) is not PygLinear or isinstance(
                lin.weight, torch.nn.parameter.UninitializedParameter):
            return False
    if any(hooked(module) for module in mlp.modules()):
        return False
    return not global_hooks()


def relu_stack(mlp: MLP, x: Tensor) -> Tensor:
    r""":obj:`mlp(x)` for an :obj:`mlp` that :func:`relu_stack_applies`
    to, with fewer passes over each activation on CPUs, where those passes
    are bound by memory bandwidth:

    - each ReLU runs in place on its layer's output (which the layer's
      backward does not keep), so no second :math:`N \times C` tensor is
      allocated and filled;
    - on the CPU, each layer takes its bias inside its product,
      :math:`[\mathbf{h}, 1] [\mathbf{W}; \mathbf{b}]`: the product writes
      the output once instead of filling it with the broadcast bias first,
      and the bias gradient comes out of the weight gradient's product
      instead of a sum over the :math:`N` rows. The column of ones comes
      from the layer before, as one more output column (weights 0, bias 1,
      which the ReLU keeps at 1); the first layer appends it to its input
      when that input is narrow (:obj:`4 (F + 1) \le C`, such as 3-D points
      into 128 channels) and adds its own bias otherwise.

    The same function as :obj:`mlp(x)` to float rounding (the bias is
    summed inside the product), with the same gradients, double backward
    included: every step is an ordinary differentiable operation. One
    difference: the carried column is a product, and :math:`0 \cdot \infty`
    is NaN, so a row whose activations hold an infinity comes out NaN where
    the MLP's ReLU might have zeroed a :math:`-\infty`. The column is
    therefore carried in float32 and float64 only, outside
    :func:`torch.autocast` (half precisions overflow at 65,504), and for
    strided (dense) inputs."""
    num_layers = len(mlp.lins)
    # Other devices add the bias inside the product already, and the
    # concatenations would be kernels more than PyG's MLP launches.
    carry = x.device.type == 'cpu' and x.layout == torch.strided and \
        x.dtype in (torch.float32, torch.float64) and \
        mlp.lins[0].weight.dtype in (torch.float32, torch.float64) and \
        not torch.is_autocast_enabled('cpu')
    ones_in = False  # x ends in a column of ones for this layer's bias
    for i, lin in enumerate(mlp.lins):
        weight, bias = lin.weight, lin.bias
        act = i < num_layers - 1 or not mlp.plain_last
        if carry and i == 0 and bias is not None and \
                4 * (weight.size(1) + 1) <= weight.size(0):
            x = torch.cat([x, x.new_ones(x.shape[:-1] + (1, ))], dim=-1)
            ones_in = True
        # The next layer's bias rides on a column of ones through the ReLU.
        ones_out = carry and act and i < num_layers - 1 and \
            mlp.lins[i + 1].bias is not None
        if ones_in:  # then bias is not None, as the layer before checked
            rows = torch.cat([weight.t(), bias.unsqueeze(0)], dim=0)
            if ones_out:
                one = rows.new_zeros(rows.size(0), 1)
                one[-1] = 1.0
                rows = torch.cat([rows, one], dim=1)
            x = x @ rows
        elif ones_out:
            weight = torch.cat([weight, weight.new_zeros(1, weight.size(1))])
            bias = weight.new_zeros(weight.size(0) - 1) if bias is None \
                else bias
            bias = torch.cat([bias, bias.new_ones(1)])
            x = torch.nn.functional.linear(x, weight, bias)
        else:
            x = torch.nn.functional.linear(x, weight, bias)
        if act:
            x = x.relu_()
        ones_in = ones_out
    return x
