from typing import Optional

import torch
from torch import Tensor
from torch.nn import Parameter
from torch.nn.parameter import UninitializedParameter

from torch_geometric.nn.dense.linear import is_uninitialized_parameter
from torch_geometric.utils import cumsum
from torch_geometric_deepsets._kernels import segment_pool, set_counts
from torch_geometric_deepsets.capabilities import (
    ORDER_STATISTICS,
    SORTS,
    declare_not_streamable,
    declare_not_weighted,
)
from torch_geometric_deepsets.checks import check_int
from torch_geometric_deepsets.sets import SetAggregation


class FSPool(SetAggregation):
    r"""Featurewise sort pooling from the `"FSPool: Learning Set
    Representations with Featurewise Sort Pooling"
    <https://arxiv.org/abs/1906.02795>`_ paper (Zhang, Hare and
    Prügel-Bennett, ICLR 2020): every feature is sorted within the set and
    the sorted values are summed with learned weights that depend on their
    relative rank,

    .. math::
        y_{s,c} = \sum_{j=1}^{n_s} w_c\!\left(\frac{j - 1}{\max(n_s - 1, 1)}
        \right) x_{(j),c}, \qquad x_{(1),c} \geq \dots \geq x_{(n_s),c},

    where :math:`x_{(j),c}` is the :math:`j`-th largest value of feature
    :math:`c` in set :math:`s` (of :math:`n_s` elements) and :math:`w_c` is
    the piecewise-linear function with :math:`k` pieces through the learned
    knots :math:`\mathbf{W}_{c,0}, \dots, \mathbf{W}_{c,k}` at
    :math:`0, \frac{1}{k}, \dots, 1`:

    .. math::
        w_c(r) = (1 - \lambda)\, \mathbf{W}_{c,i} + \lambda\,
        \mathbf{W}_{c,i+1}, \qquad i = \min(\lfloor k r \rfloor, k - 1),
        \quad \lambda = k r - i.

    Because the weights are a function of the *relative* rank, one set of
    parameters serves every set size; a set of one element gets
    :math:`w_c(0)`, an empty set pools to zero. With all knots equal to 1 it
    is sum pooling; where every relative rank of a set falls on a knot
    (:math:`n_s - 1` divides :math:`k`), a single non-zero knot at
    :math:`r = 0`, :math:`1/2` or :math:`1` picks the largest, the median or
    the smallest value, and the knots in between interpolate between order
    statistics.

    Rows are sorted on the :obj:`index` vector itself, without padding: a
    stable sort of every feature by value, then a stable sort by set id,
    :math:`O(N \log N)` per feature. Like PyG's aggregations it takes
    elements along any dimension :obj:`dim` but the last. Ties do not change
    the value; tied elements take consecutive ranks in the order they come
    in :obj:`x`, which decides how the gradient is shared among them.

    Args:
        in_channels (int): Size of each element :math:`C`, or :obj:`-1` to
            find it at the first call.
        num_pieces (int): Number of linear pieces :math:`k` of each weight
            function.

    Shapes:
        - **input:** elements :math:`(*, N, C)`, set ids :math:`(N)` or
          boundaries :math:`(B + 1)`
        - **output:** :math:`(*, B, C)`
    """
    def __init__(self, in_channels: int, num_pieces: int) -> None:
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels, lazy=True)
        self.num_pieces = check_int('num_pieces', num_pieces)
        if in_channels == -1:
            self.weight = UninitializedParameter()
        else:
            self.weight = Parameter(torch.empty(in_channels, num_pieces + 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        # Standard normal knots, as in the authors' implementation.
        if not is_uninitialized_parameter(self.weight):
            torch.nn.init.normal_(self.weight)

    def _materialize(self, channels: int) -> None:
        self.weight.materialize((channels, self.num_pieces + 1))
        self.in_channels = channels
        self.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A lazy module takes its width from the weights it loads.
        weight = state_dict.get(prefix + 'weight')
        if is_uninitialized_parameter(self.weight) and weight is not None:
            self._materialize(weight.size(0))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor, index: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2, max_num_elements: Optional[int] = None
                ) -> Tensor:
        r"""Featurewise sort pooling of every set."""
        if is_uninitialized_parameter(self.weight):  # lazy: the first call
            self._materialize(x.size(-1))
        k = self.num_pieces

        # Along the element dimension, for every feature: rows grouped by set
        # (ascending id), largest value first inside a set.
        by_value = torch.argsort(x, dim=dim, descending=True, stable=True)
        by_set = torch.argsort(index[by_value], dim=dim, stable=True)
        ordered = x.gather(dim, by_value.gather(dim, by_set))
        # The set ids are now sorted in every column alike, so the rank of a
        # row within its set is the same for all features.
        set_of_row = torch.sort(index).values
        size = set_counts(index, None, dim_size)
        rank = torch.arange(x.size(dim), device=x.device) - \
            cumsum(size)[set_of_row]
        denominator = (size[set_of_row] - 1).clamp(min=1)
        # Ranks reach N: in half precision they would round.
        dtype = torch.promote_types(self.weight.dtype, torch.float32)
        position = rank.to(dtype) * k / denominator

        left = position.floor().long().clamp(max=k - 1)
        knots = self.weight.t()
        frac = (position - left).unsqueeze(-1).to(knots.dtype)
        weight = torch.lerp(knots[left], knots[left + 1], frac)  # [N, C]
        shape = [1] * x.dim()
        shape[dim], shape[-1] = x.size(dim), x.size(-1)
        return segment_pool(ordered * weight.view(shape), set_of_row, None,
                            dim_size, 'sum', dim)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'num_pieces={self.num_pieces})')


declare_not_streamable(SORTS, FSPool)
declare_not_weighted(ORDER_STATISTICS, FSPool)
