from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric.nn.dense.linear import Linear, is_uninitialized_parameter
from torch_geometric_deepsets.checks import check_int
from torch_geometric_deepsets.pool import (
    AggrType,
    apply_aggr,
    broadcast,
    pooled_width,
    resolve_aggr,
)
from torch_geometric_deepsets.sets import SetModule


class PermutationEquivariantLayer(SetModule):
    r"""The permutation-equivariant layer from the `"Deep Sets"
    <https://arxiv.org/abs/1703.06114>`_ paper (Lemma 3 and its
    multi-channel form, eq. 22):

    .. math::
        \mathbf{y}_i = \mathbf{x}_i \mathbf{\Lambda} + \mathbf{b}
        - \left( \bigoplus_{j \in \mathcal{S}(i)} \mathbf{x}_j \right)
        \mathbf{\Gamma},

    where :math:`\mathcal{S}(i)` is the set holding element :math:`i` and
    :math:`\bigoplus` a pooling operator. With :obj:`tied=True` it is the
    weight-tied form of eq. 23,

    .. math::
        \mathbf{y}_i = \left( \mathbf{x}_i
        - \bigoplus_{j \in \mathcal{S}(i)} \mathbf{x}_j \right)
        \mathbf{\Lambda} + \mathbf{b}.

    :math:`\mathbf{\Lambda}` (with the bias :math:`\mathbf{b}`) is the PyG
    :class:`~torch_geometric.nn.dense.Linear` :obj:`lin`,
    :math:`\mathbf{\Gamma}` the bias-free PyG
    :class:`~torch_geometric.nn.dense.Linear` :obj:`lin_pool` (:obj:`None`
    when tied). With these weights the layer equals the authors' reference
    layers :obj:`PermEqui2_max` / :obj:`PermEqui2_mean` (untied) and
    :obj:`PermEqui1_max` / :obj:`PermEqui1_mean` (tied).

    The pooled features are computed once per set, multiplied by
    :math:`\mathbf{\Gamma}` (or :math:`\mathbf{\Lambda}`) at set level and only
    then gathered back to the elements, so no :math:`N \times N` or padded
    tensor is ever built.

    Args:
        in_channels (int): Size of each input element, or :obj:`-1` to find
            it at the first call.
        out_channels (int): Size of each output element.
        aggr (str or Aggregation or list, optional): The pooling operator
            :math:`\bigoplus`: :obj:`"sum"`, :obj:`"mean"`, :obj:`"max"`, any
            aggregation PyG resolves, an instance, or a list (concatenated;
            untied form only). (default: :obj:`"sum"`)
        tied (bool, optional): Use the tied form of eq. 23.
            (default: :obj:`False`)
        bias (bool, optional): Learn the additive bias :math:`\mathbf{b}`.
            (default: :obj:`True`)
        aggr_kwargs (dict, optional): Arguments passed to the aggregation
            when :obj:`aggr` is a string. (default: :obj:`None`)

    Shapes:
        - **input:** elements :math:`(*, N, F_{in})`, set ids :math:`(N)` or
          boundaries :math:`(B + 1)`
        - **output:** :math:`(*, N, F_{out})`
    """
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        aggr: AggrType = 'sum',
        tied: bool = False,
        bias: bool = True,
        aggr_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels, lazy=True)
        self.out_channels = check_int('out_channels', out_channels)
        self.tied = tied
        self.aggr_module = resolve_aggr(aggr, aggr_kwargs)

        width = pooled_width(self.aggr_module, in_channels)
        if tied and width is not None and width != in_channels:
            raise ValueError(f"tied=True subtracts the pooled features from "
                             f"the elements, so 'aggr' must keep the width "
                             f"{in_channels} (got {width} from {aggr!r})")

        self.lin = Linear(in_channels, out_channels, bias=bias)
        self.lin_pool = None
        if not tied:
            self.lin_pool = Linear(-1 if width is None else width,
                                   out_channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        self.lin.reset_parameters()
        if self.lin_pool is not None:
            self.lin_pool.reset_parameters()
        self.aggr_module.reset_parameters()

    takes_weight = True

    def forward(self, x: Tensor, batch: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2, weight: Optional[Tensor] = None) -> Tensor:
        r"""The layer on every element."""
        if is_uninitialized_parameter(self.lin.weight):  # first call
            self.lin(x.narrow(dim, 0, 0))
        pooled = apply_aggr(self.aggr_module, x, batch, ptr, dim_size, dim,
                            weight=weight)
        if self.lin_pool is None:
            if pooled.size(-1) != x.size(-1):
                raise ValueError(f"tied=True subtracts the pooled features "
                                 f"from the elements, but {self.aggr_module} "
                                 f"turns {x.size(-1)} features into "
                                 f"{pooled.size(-1)}")
            # (x - p) Λ + b = x Λ + b - p Λ: multiply the B pooled rows, not N.
            shift = F.linear(pooled, self.lin.weight)
        else:
            shift = self.lin_pool(pooled)
        # b - s per set, gathered to the elements, and x Λ added by the GEMM:
        # no separate [N, F_out] subtraction pass.
        bias = self.lin.bias
        shift = shift.neg() if bias is None else torch.sub(bias, shift)
        base = broadcast(shift, x, batch, ptr, dim)
        if x.dim() == 2:
            return torch.addmm(base, x, self.lin.weight.t())
        out = torch.addmm(base.reshape(-1, self.out_channels),
                          x.reshape(-1, x.size(-1)), self.lin.weight.t())
        return out.view(x.shape[:-1] + (self.out_channels, ))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, aggr={self.aggr_module}, '
                f'tied={self.tied})')
