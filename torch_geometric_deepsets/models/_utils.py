r"""Building blocks the models share: element and set networks from channel
lists, calling them with the batch vector where they use it, and pooling
moved in front of :math:`\phi`'s last affine layer."""
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor

from torch_geometric.nn import MLP
from torch_geometric.nn.aggr import (
    Aggregation,
    MeanAggregation,
    SumAggregation,
)
from torch_geometric.nn.dense.linear import Linear as PygLinear
from torch_geometric.nn.dense.linear import is_uninitialized_parameter
from torch_geometric_deepsets._kernels import pool_affine
from torch_geometric_deepsets.pool import apply_aggr, element_index

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
        isinstance(c, int) and not isinstance(c, bool) for c in channels)
    if ok:
        ok = (channels[0] > 0 or channels[0] == -1) and all(
            c > 0 for c in channels[1:])
    if not ok:
        raise ValueError(f"'{name}' as a channel list needs at least two "
                         f"ints [in, ..., out], all positive except a lazy "
                         f"input width of -1 (got {channels})")
    return channels


def check_dropout(dropout: float, name: str = 'dropout') -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0.0 <= dropout < 1.0:
        raise ValueError(f"'{name}' must lie in [0, 1) (got {dropout!r})")


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
        return self.body(x, batch, batch_size)

    def forward(self, x: Tensor, batch: Optional[Tensor] = None,
                batch_size: Optional[int] = None) -> Tensor:
        return self.lin(self.hidden(x, batch, batch_size))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({str(self.channel_list)[1:-1]})'


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
    if isinstance(module, (MLP, SplitMLP)):
        batch = None
        if _uses_batch(module):
            batch = element_index(x, index, ptr, dim)
        return module(x, batch, dim_size)
    return module(x)


def affine_last(phi: torch.nn.Module) -> Optional[torch.nn.Module]:
    r"""The last layer of :obj:`phi` when it is affine and pooling may move
    in front of it: the :obj:`lin` of a :class:`SplitMLP` (a channel list),
    or the last module of a :class:`torch.nn.Sequential` that is exactly a
    :class:`torch.nn.Linear` or PyG :class:`Linear` (not a subclass, whose
    :meth:`forward` may do more), with initialised parameters."""
    if isinstance(phi, SplitMLP):
        lin = phi.lin
    elif isinstance(phi, torch.nn.Sequential) and len(phi) > 0:
        lin = phi[-1]
    else:
        return None
    if type(lin) not in AFFINE:
        return None
    if isinstance(lin.weight, torch.nn.parameter.UninitializedParameter):
        return None  # lazy: the first call through lin initialises it
    return lin


def _hidden(phi: torch.nn.Module, x: Tensor, index: Optional[Tensor],
            ptr: Optional[Tensor], dim_size: int, dim: int) -> Tensor:
    if isinstance(phi, SplitMLP):
        if phi.body is None:
            return x
        return run(phi.body, x, index, ptr, dim_size, dim)
    for module in phi[:-1]:
        x = module(x)
    return x


def fused_reduce(phi: torch.nn.Module, aggr: Aggregation) -> Optional[str]:
    r"""The reduction (:obj:`"sum"` or :obj:`"mean"`) that moves in front of
    :obj:`phi`'s last layer, or :obj:`None` if the rewrite does not apply."""
    if type(aggr) is SumAggregation:
        reduce = 'sum'
    elif type(aggr) is MeanAggregation:
        reduce = 'mean'
    else:
        return None
    return reduce if affine_last(phi) is not None else None


def phi_pool(phi: torch.nn.Module, aggr: Aggregation, x: Tensor,
             index: Optional[Tensor], ptr: Optional[Tensor], dim_size: int,
             dim: int, max_num_elements: Optional[int] = None) -> Tensor:
    r""":math:`\bigoplus_{i \in s} \phi(\mathbf{x}_i)` for every set
    :math:`s` (:obj:`max_num_elements` as in
    :func:`~torch_geometric_deepsets.pool.apply_aggr`).

    For sum and mean pooling after a :math:`\phi` whose last layer is
    affine (see :func:`affine_last`), pools before that layer and applies
    it to the :math:`B` pooled rows instead of the :math:`N` elements
    (:func:`~torch_geometric_deepsets._kernels.pool_affine`): exact in
    arithmetic, an :math:`N/B`-fold saving on that layer (unless the
    elements lie along the last dimension).
    """
    # Along the last dimension the affine layer would mix the elements.
    reduce = fused_reduce(phi, aggr) if dim < x.dim() - 1 else None
    if reduce is None:
        h = run(phi, x, index, ptr, dim_size, dim)
        return apply_aggr(aggr, h, index, ptr, dim_size, dim,
                          max_num_elements)
    lin = affine_last(phi)
    assert lin is not None
    h = _hidden(phi, x, index, ptr, dim_size, dim)
    return pool_affine(h, lin.weight, lin.bias, index, ptr, dim_size, reduce,
                       dim)


# Context #####################################################################

FUSIONS = ('concat', 'film', 'add')


def check_fusion(fusion: object) -> None:
    if fusion not in FUSIONS:
        raise ValueError(f"Unknown 'fusion' {fusion!r}; valid options are "
                         f"{', '.join(repr(f) for f in FUSIONS)}")


def check_context(context: object, num_sets: int, channels: Optional[int],
                  dtype: torch.dtype, index_name: str = 'batch',
                  lazy: bool = False) -> None:
    r"""Raises unless :obj:`context` holds one row of :obj:`channels`
    features (any number where :obj:`channels` is :obj:`None`: a lazy
    width not yet known) of :obj:`dtype` (the elements' dtype) for each of
    the :obj:`num_sets` sets."""
    shown = 'context_channels' if channels is None else channels
    if not isinstance(context, Tensor):
        raise TypeError(f"'context' must be a torch.Tensor "
                        f"(got {type(context).__name__})")
    if context.dtype != dtype:
        raise TypeError(f"'context' is {context.dtype} but 'x' is {dtype}; "
                        f"convert with context.to({dtype})")
    if context.dim() != 2:
        raise ValueError(f"'context' must be a matrix [num_sets, "
                         f"context_channels] = [{num_sets}, {shown}] (got "
                         f"shape {tuple(context.shape)}); for one set use "
                         f"context.view(1, -1)")
    if context.size(0) != num_sets:
        raise ValueError(f"'context' has {context.size(0)} rows but the "
                         f"batch holds {num_sets} sets; give one context row "
                         f"per set, shape [{num_sets}, {shown}] (pass "
                         f"'dim_size' when trailing sets are empty, as "
                         f"'{index_name}' alone cannot show them)")
    if channels is not None and context.size(1) != channels:
        found = ' (found at the first call)' if lazy else ''
        raise ValueError(f"'context' has {context.size(1)} features but "
                         f"'context_channels' is {channels}{found}")


class ContextFusion(torch.nn.Module):
    r"""Joins a per-set context :math:`\mathbf{z}_s` to the rows
    :math:`\mathbf{h}_i` of set :math:`s`:

    * :obj:`"concat"`: :math:`[\mathbf{h}_i \,\Vert\, \mathbf{z}_s]`;
    * :obj:`"film"`: :math:`\mathbf{h}_i \odot (1 +
      \boldsymbol{\gamma}(\mathbf{z}_s)) + \boldsymbol{\beta}(\mathbf{z}_s)`
      with :math:`[\boldsymbol{\gamma} \Vert \boldsymbol{\beta}]` a linear
      map of :math:`\mathbf{z}_s` (identity at :math:`\gamma = \beta = 0`);
    * :obj:`"add"`: :math:`\mathbf{h}_i + \mathbf{z}_s \mathbf{W}`.

    Projections of the context are computed once per set and then gathered
    to the rows.

    Args:
        fusion (str): :obj:`"concat"`, :obj:`"film"` or :obj:`"add"`.
        context_channels (int): Width :math:`C` of the context, or
            :obj:`-1` to find it at the first call.
        channels (int, optional): Width of :math:`\mathbf{h}_i`, needed by
            :obj:`"film"` and :obj:`"add"`. (default: :obj:`None`)
    """
    def __init__(self, fusion: str, context_channels: int,
                 channels: Optional[int] = None) -> None:
        super().__init__()
        check_fusion(fusion)
        self.fusion = fusion
        self.context_channels = context_channels
        self.lin = None
        if fusion != 'concat':
            assert channels is not None and channels > 0
            width = 2 * channels if fusion == 'film' else channels
            self.lin = (PygLinear(-1, width) if context_channels == -1 else
                        torch.nn.Linear(context_channels, width))
        self.reset_parameters()

    def expected_channels(self, after: Optional[torch.nn.Module] = None,
                          channels: Optional[int] = None) -> Optional[int]:
        r"""The context width this module takes: :obj:`context_channels`,
        or for a lazy width the one the first call found (:obj:`None`
        before it). For :obj:`"concat"` that is what the affine layer
        :obj:`after` it takes beyond the :obj:`channels` element
        features."""
        if self.context_channels > 0:
            return self.context_channels
        if self.lin is not None:  # "film" and "add": a lazy projection
            weight = self.lin.weight
            return None if is_uninitialized_parameter(weight) else \
                weight.size(1)
        if after is None or channels is None or channels < 0 or \
                is_uninitialized_parameter(after.weight):
            return None
        return after.weight.size(1) - channels

    def check(self, context: object, num_sets: int, dtype: torch.dtype,
              after: Optional[torch.nn.Module] = None,
              channels: Optional[int] = None) -> None:
        r""":func:`check_context` against :meth:`expected_channels`."""
        check_context(context, num_sets,
                      self.expected_channels(after, channels), dtype,
                      lazy=self.context_channels < 0)

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        if self.lin is not None:
            self.lin.reset_parameters()

    def forward(self, h: Tensor, context: Tensor, index: Tensor) -> Tensor:
        if self.lin is None:
            return torch.cat([h, context.index_select(0, index)], dim=-1)
        z = self.lin(context)
        if self.fusion == 'add':
            return h + z.index_select(0, index)
        gamma, beta = z.chunk(2, dim=-1)
        scale = (1.0 + gamma).index_select(0, index)
        return torch.addcmul(beta.index_select(0, index), h, scale)
