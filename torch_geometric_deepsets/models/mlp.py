r"""Element and set networks from channel lists: building :math:`\phi` and
:math:`\rho`, knowing their input and output widths where their structure
shows them, and calling them with the batch vector where they use it."""
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor

from torch_geometric.nn import MLP
from torch_geometric.nn.aggr import Aggregation
from torch_geometric.nn.dense.linear import Linear as PygLinear
from torch_geometric_deepsets.checks import is_int
from torch_geometric_deepsets.grouping import element_index

ModuleSpec = Union[Sequence[int], torch.nn.Module]
ActType = Union[str, torch.nn.Module, None]

#: The affine layers whose weight and bias the pooling rewrite reads.
AFFINE = (torch.nn.Linear, PygLinear)


def check_channels(spec: Sequence[int], name: str) -> List[int]:
    r"""Validates a channel list :obj:`[in, hidden..., out]`: at least two
    entries, positive ints, the first one :obj:`-1` for a lazy input width
    (found at the first call, as PyG's :class:`MLP` does)."""
    channels = list(spec) if isinstance(spec, (list, tuple)) else spec
    ok = isinstance(channels, list) and len(channels) >= 2 and all(
        is_int(c) for c in channels)
    if ok:
        ok = (channels[0] > 0 or channels[0] == -1) and all(
            c > 0 for c in channels[1:])
    if not ok:
        raise ValueError(f"'{name}' as a channel list needs at least two "
                         f"ints [in, ..., out], all positive except a lazy "
                         f"input width of -1 (got {channels})")
    return [int(c) for c in channels]


class SplitMLP(torch.nn.Module):
    r""":math:`\phi` built from a channel list :obj:`[in, hidden..., out]`:
    the same network as :obj:`torch_geometric.nn.MLP(channels)` (a PyG
    :class:`~torch_geometric.nn.models.MLP` for the hidden layers, with
    activation, normalisation and dropout after each, then a plain affine
    output layer), kept as :obj:`body` and :obj:`lin` so that sum and mean
    pooling can move in front of :obj:`lin`.

    Args:
        channels (List[int]): :obj:`[in, hidden..., out]`; :obj:`in` may be
            :obj:`-1` (lazy).
        act (str or torch.nn.Module, optional): The activation.
            (default: :obj:`"relu"`)
        norm (str, optional): The normalisation of hidden layers.
            (default: :obj:`None`)
        dropout (float, optional): Dropout after hidden layers.
            (default: :obj:`0.0`)
    """
    def __init__(self, channels: List[int], act: ActType = 'relu',
                 norm: Optional[str] = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.channel_list = list(channels)
        self.body = None
        if len(channels) > 2:
            self.body = MLP(channels[:-1], act=act, norm=norm,
                            dropout=dropout, plain_last=False)
        self.lin = PygLinear(channels[-2], channels[-1])

    @property
    def in_channels(self) -> int:
        return self.channel_list[0]

    @property
    def out_channels(self) -> int:
        return self.channel_list[-1]

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        if self.body is not None:
            self.body.reset_parameters()
        self.lin.reset_parameters()

    def hidden(self, x: Tensor, batch: Optional[Tensor] = None,
               batch_size: Optional[int] = None) -> Tensor:
        r"""The input of :obj:`lin`."""
        if self.body is None:
            return x
        if relu_stack_applies(self.body):
            return relu_stack(self.body, x)
        return self.body(x, batch, batch_size)

    def forward(self, x: Tensor, batch: Optional[Tensor] = None,
                batch_size: Optional[int] = None) -> Tensor:
        return self.lin(self.hidden(x, batch, batch_size))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({str(self.channel_list)[1:-1]})'


def _hooked(module: torch.nn.Module) -> bool:
    r"""Whether calling :obj:`module` does more than its class's
    :meth:`forward`: hooks, or a :meth:`forward` replaced on the instance
    (as offloading and adapter tools do)."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or module._backward_hooks or module._backward_pre_hooks
                or 'forward' in vars(module))


def _global_hooks() -> bool:
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
    called (pinned by a test)."""
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
    if any(_hooked(module) for module in mlp.modules()):
        return False
    return not _global_hooks()


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


def build_phi(spec: ModuleSpec, name: str, act: ActType = 'relu',
              norm: Optional[str] = None, dropout: float = 0.0,
              extra_in_channels: int = 0) -> torch.nn.Module:
    r"""The element network from :obj:`spec`: a channel list becomes a
    :class:`SplitMLP` (no normalisation unless asked, since PyG's default
    batch norm would make one set's output depend on the other sets of a
    training batch), widened by :obj:`extra_in_channels` (:obj:`-1`: by a
    width found at the first call, which makes the input lazy); a module is
    used as it is."""
    return _build(SplitMLP, spec, name, act, norm, dropout,
                  extra_in_channels)


def build_rho(spec: ModuleSpec, name: str, act: ActType = 'relu',
              norm: Optional[str] = None, dropout: float = 0.0,
              extra_in_channels: int = 0) -> torch.nn.Module:
    r"""The set network from :obj:`spec`: a channel list becomes a PyG
    :class:`~torch_geometric.nn.models.MLP`, widened by
    :obj:`extra_in_channels`; a module is used as it is."""
    return _build(MLP, spec, name, act, norm, dropout, extra_in_channels)


def _build(cls: type, spec: ModuleSpec, name: str, act: ActType,
           norm: Optional[str], dropout: float,
           extra_in_channels: int) -> torch.nn.Module:
    if isinstance(spec, torch.nn.Module):
        return spec
    if isinstance(spec, (list, tuple)):
        channels = check_channels(spec, name)
        if channels[0] > 0:
            # A lazy extra width makes the whole input width lazy.
            channels[0] = -1 if extra_in_channels < 0 else \
                channels[0] + extra_in_channels
        return cls(channels, act=act, norm=norm, dropout=dropout)
    raise TypeError(f"'{name}' must be a list of channels or a "
                    f"torch.nn.Module (got {type(spec).__name__})")


def in_channels_of(module: torch.nn.Module) -> Optional[int]:
    r"""Input width of :obj:`module` where it is known (:obj:`-1`: lazy)."""
    if isinstance(module, (MLP, SplitMLP)):
        return module.in_channels
    if isinstance(module, torch.nn.Linear):
        return module.in_features
    if isinstance(module, PygLinear):
        return module.in_channels
    if isinstance(module, torch.nn.Embedding):
        return None
    if isinstance(module, torch.nn.Sequential) and len(module) > 0:
        return in_channels_of(module[0])
    return None


def first_linear(module: Optional[torch.nn.Module]
                 ) -> Optional[torch.nn.Module]:
    r"""The affine layer that first sees the input of :obj:`module`, where
    the module's structure shows it."""
    if isinstance(module, AFFINE):
        return module
    if isinstance(module, SplitMLP):
        return first_linear(module.body) if module.body is not None \
            else module.lin
    if isinstance(module, MLP):
        return module.lins[0]
    if isinstance(module, torch.nn.Sequential) and len(module) > 0:
        return first_linear(module[0])
    return None


def out_channels_of(module: torch.nn.Module) -> Optional[int]:
    r"""Output width of :obj:`module` where it is known."""
    if isinstance(module, (MLP, SplitMLP)):
        return module.out_channels
    if isinstance(module, torch.nn.Linear):
        return module.out_features
    if isinstance(module, PygLinear):
        return module.out_channels
    if isinstance(module, torch.nn.Embedding):
        return module.embedding_dim
    if isinstance(module, torch.nn.Sequential) and len(module) > 0:
        for child in reversed(module):
            width = out_channels_of(child)
            if width is not None:
                return width
            if not _keeps_width(child):
                return None
    return None


def check_rho_input(rho: torch.nn.Module, pooled: Optional[int],
                    aggr: Optional[Aggregation], extra: int = 0) -> None:
    r"""Raises a :class:`ValueError` naming both widths when :obj:`rho`,
    whose input width is known, cannot take the :obj:`pooled` features per
    set of :math:`\phi` (pooled with :obj:`aggr`, where given) plus
    :obj:`extra` context features. Models check when they are built, where
    :math:`\phi`'s width is known (:obj:`pooled` is :obj:`None` where it is
    not), and at every call, where a custom :math:`\phi` shows it."""
    expected = in_channels_of(rho)
    if pooled is None or expected is None or expected <= 0 or \
            expected == pooled + extra:
        return
    source = "'phi'" if aggr is None else f"'phi' pooled with {aggr}"
    context = f' + {extra} context' if extra else ''
    raise ValueError(f"'rho' takes {expected} input channels but {source} "
                     f"gives {pooled}{context} features per set; make rho's "
                     f"input width {pooled + extra}")


def stack_options(act: Optional[torch.nn.Module], dropout: float,
                  readout: Optional[Aggregation] = None) -> str:
    r"""The options of a stack of equivariant layers that differ from the
    defaults, as :meth:`__repr__` shows them: the readout, an activation
    other than ReLU, dropout."""
    extra = ''
    if readout is not None:
        extra += f', readout={readout}'
    if type(act) is not torch.nn.ReLU:
        extra += f', act={act}'
    if dropout > 0:
        extra += f', dropout={dropout}'
    return extra


def _keeps_width(module: torch.nn.Module) -> bool:
    return isinstance(module, (torch.nn.Dropout, torch.nn.Identity,
                               torch.nn.ReLU, torch.nn.Tanh, torch.nn.ELU,
                               torch.nn.GELU, torch.nn.LeakyReLU,
                               torch.nn.Sigmoid, torch.nn.SiLU))


def _uses_batch(module: torch.nn.Module) -> bool:
    r"""Whether PyG's :class:`MLP` passes the batch vector to the
    normalisation layers of :obj:`module` (pinned by a test)."""
    if isinstance(module, SplitMLP):
        module = module.body
    return isinstance(module, MLP) and module.supports_norm_batch


def run(module: torch.nn.Module, x: Tensor, index: Optional[Tensor],
        ptr: Optional[Tensor], dim_size: int, dim: int) -> Tensor:
    r"""Runs an element-level :obj:`module` on :obj:`x`, with the set of
    every row for the normalisation layers of PyG MLPs that use it."""
    if isinstance(module, MLP) and relu_stack_applies(module):
        return relu_stack(module, x)
    if isinstance(module, (MLP, SplitMLP)):
        batch = None
        if _uses_batch(module):
            batch = element_index(x, index, ptr, dim)
        return module(x, batch, dim_size)
    return module(x)
