from typing import Any, Dict, Optional, Union

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from torch_geometric.nn.inits import reset
from torch_geometric.utils import cumsum
from torch_geometric_deepsets._kernels import set_counts
from torch_geometric_deepsets.capabilities import (
    SEQUENCES,
    declare_not_streamable,
    declare_not_weighted,
)
from torch_geometric_deepsets.checks import check_dropout, check_int
from torch_geometric_deepsets.models.mlp import (
    ModuleSpec,
    build_phi,
    build_rho,
)
from torch_geometric_deepsets.models.phi_pool import phi_pool
from torch_geometric_deepsets.models.tuples import (
    MAX_TUPLE_BUDGET,
    check_tuples,
    enumerate_tuples,
    gather_tuples,
)
from torch_geometric_deepsets.models.widths import (
    check_rho_input,
    in_channels_of,
    out_channels_of,
)
from torch_geometric_deepsets.pool import AggrType, pooled_width, resolve_aggr
from torch_geometric_deepsets.sets import SetAggregation


def _element_width(phi: torch.nn.Module, k: int,
                  spec: ModuleSpec) -> Optional[int]:
    r"""The element width that :math:`\phi`'s input of :math:`k` elements
    implies, or :obj:`None` where the module does not tell."""
    phi_in = in_channels_of(phi)
    if phi_in is None or phi_in <= 0:
        return None
    if isinstance(spec, (list, tuple)):
        return spec[0]
    if phi_in % k != 0:
        raise ValueError(f"'phi' takes {phi_in} input channels, which is not "
                         f"k={k} elements of equal width")
    return phi_in // k


def _build_phi_rho(obj: torch.nn.Module, phi: ModuleSpec, rho: ModuleSpec,
                   k: int, aggr: Optional[AggrType], act, dropout: float,
                   aggr_kwargs: Optional[Dict[str, Any]]) -> None:
    r"""Builds :obj:`obj.phi` on :math:`k` concatenated elements (a channel
    list names the width of one element), :obj:`obj.rho`, and the pooling
    over tuples, and checks that their widths fit."""
    check_dropout(dropout)
    extra = (k - 1) * phi[0] if isinstance(phi, (list, tuple)) and \
        len(phi) > 0 and isinstance(phi[0], int) and phi[0] > 0 else 0
    obj.phi = build_phi(phi, 'phi', act, None, dropout, extra)
    obj.rho = build_rho(rho, 'rho', act, None, dropout)
    obj.aggr_module = None if aggr is None else resolve_aggr(aggr, aggr_kwargs)
    obj.in_channels = _element_width(obj.phi, k, phi)

    width = out_channels_of(obj.phi)
    if obj.aggr_module is not None:
        width = pooled_width(obj.aggr_module, width)
    check_rho_input(obj.rho, width, obj.aggr_module)


def _state_width(rnn: torch.nn.RNNBase) -> int:
    r"""The width of the last hidden state of :obj:`rnn` (of its projection
    for an LSTM with :obj:`proj_size`)."""
    return rnn.proj_size or rnn.hidden_size


class JanossyPooling(SetAggregation):
    r"""The :math:`k`-ary Janossy pooling from the `"Janossy Pooling:
    Learning Deep Permutation-Invariant Functions for Variable-Size Inputs"
    <https://arxiv.org/abs/1811.01900>`_ paper (Murphy et al., ICLR 2019):
    a permutation-sensitive :math:`\phi` sees ordered :math:`k`-tuples of
    distinct elements of a set, and the results are averaged over all of
    them,

    .. math::
        f(\mathcal{X}_s) = \rho\left( \frac{1}{|\Pi_k(s)|}
        \sum_{(i_1, \dots, i_k) \in \Pi_k(s)}
        \phi\big(\mathbf{x}_{i_1} \,\Vert\, \cdots \,\Vert\,
        \mathbf{x}_{i_k}\big) \right),

    where :math:`\Pi_k(s)` holds the :math:`n_s!/(n_s - k)!` ordered tuples
    of :math:`k` distinct elements of set :math:`s`. The average is over
    all orderings of the set truncated to their first :math:`k` elements,
    so the model is permutation invariant for every :math:`\phi`;
    :math:`k = 1` is Deep Sets, and :math:`k = 2` lets :math:`\phi` see
    pairwise interactions (distances, equalities) that a sum of
    single-element terms can express only with far wider networks. A set
    with :math:`0 < n_s < k` elements uses its :math:`n_s!` orderings, the
    missing slots filled with zeros; an empty set pools to zero.

    With :obj:`tuples="combinations"`, :math:`\phi` sees every
    :math:`k`-subset once instead, its elements in a canonical order
    (the lexicographic order of their feature vectors, :math:`\prec`):

    .. math::
        f(\mathcal{X}_s) = \rho\left( \frac{1}{|C_k(s)|}
        \sum_{\{i_1, \dots, i_k\} \in C_k(s),\;
        \mathbf{x}_{i_1} \preceq \cdots \preceq \mathbf{x}_{i_k}}
        \phi\big(\mathbf{x}_{i_1} \,\Vert\, \cdots \,\Vert\,
        \mathbf{x}_{i_k}\big) \right),

    with :math:`|C_k(s)| = \binom{n_s}{k}`, :math:`k!` times fewer tuples.
    The order depends on the elements only, never on their order in the
    input, so the model stays exactly permutation invariant (equal elements
    tie, and are interchangeable). A set with :math:`0 < n_s < k` elements
    has one tuple: all its elements in canonical order, then
    :math:`k - n_s` zero slots.

    **Which tuples.** :obj:`"permutations"` is exact :math:`k`-ary Janossy
    pooling: :math:`\phi` sees every order of every :math:`k` elements, the
    output is as smooth in the elements as :math:`\phi` is, and
    :math:`\phi` need not be symmetric. :obj:`"combinations"` has the cost
    of the Janossy authors' code, :math:`\binom{n}{k}` tuples per set: the
    right choice when :math:`\phi` is symmetric in its :math:`k` slots
    (both options then give the same mean and max, and a sum :math:`k!`
    times smaller), or when ordered tuples do not fit the budget and
    :math:`\phi` may learn on sorted tuples, as sorting-based set models
    do. Unless :math:`\phi` is symmetric, that output jumps where two
    elements of a set swap places in the canonical order. Sorting takes
    :math:`F + 1` stable sorts of the :math:`N` rows per call (:math:`F`
    features per element). For :math:`k = 1` both are Deep Sets.

    **Cost.** :math:`\phi` runs on :math:`n_s!/(n_s - k)! \approx n_s^k`
    tuples per set (:math:`\binom{n_s}{k} \approx n_s^k / k!` with
    combinations): :math:`O(n^k)` time and memory. The tuples are
    enumerated on the :obj:`index` vector, set by set, never across sets
    and without padding; a batch with more than :obj:`max_tuples` tuples
    (combinations where they are used) raises a :class:`ValueError` that
    names the set size, :math:`k`, the tuple count and the budget. Since
    the number of tuples depends on the set sizes (a data-dependent shape),
    it is read back once per call (a device sync); :func:`torch.compile`
    and :func:`torch.export` trace it as a symbolic count and keep the
    model in one graph (there an excess raises a :class:`RuntimeError`
    from the compiled graph instead).

    Args:
        phi (List[int] or torch.nn.Module): The tuple network :math:`\phi`.
            A channel list :obj:`[in, hidden..., out]` names the width
            :obj:`in` of one element; its first layer takes the :math:`k
            \cdot \mathrm{in}` features of a tuple. A module must take
            :math:`k F` input features.
        rho (List[int] or torch.nn.Module): The set network :math:`\rho`.
        k (int, optional): The tuple size. (default: :obj:`2`)
        aggr (str or Aggregation or list, optional): The pooling over the
            tuples of a set; :obj:`"mean"` is the paper's average,
            :obj:`"sum"` weights larger sets more. (default: :obj:`"mean"`)
        max_tuples (int, optional): The largest number of tuples (or
            subsets) one call may build, at most :math:`2^{31}`.
            (default: :obj:`1_000_000`)
        act (str or torch.nn.Module, optional): Activation of channel-list
            MLPs. (default: :obj:`"relu"`)
        dropout (float, optional): Dropout of channel-list MLPs.
            (default: :obj:`0.0`)
        aggr_kwargs (dict, optional): Arguments of a string :obj:`aggr`.
            (default: :obj:`None`)
        tuples (str, optional): :obj:`"permutations"` (every ordered
            :math:`k`-tuple) or :obj:`"combinations"` (every
            :math:`k`-subset, canonically ordered).
            (default: :obj:`"permutations"`)

    Shapes:
        - **input:** elements :math:`(*, N, F)`, set ids :math:`(N)` or
          boundaries :math:`(B + 1)`
        - **output:** :math:`(*, B, F_{out})`
    """
    def __init__(
        self,
        phi: ModuleSpec,
        rho: ModuleSpec,
        k: int = 2,
        aggr: AggrType = 'mean',
        max_tuples: int = 1_000_000,
        act: Union[str, torch.nn.Module, None] = 'relu',
        dropout: float = 0.0,
        aggr_kwargs: Optional[Dict[str, Any]] = None,
        tuples: str = 'permutations',
    ) -> None:
        super().__init__()
        self.k = check_int('k', k)
        self.tuples = check_tuples(tuples)
        self.max_tuples = check_int('max_tuples', max_tuples,
                                    maximum=MAX_TUPLE_BUDGET)
        _build_phi_rho(self, phi, rho, k, aggr, act, dropout, aggr_kwargs)

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        reset(self.phi)
        reset(self.rho)
        self.aggr_module.reset_parameters()

    def input_layer(self) -> torch.nn.Module:
        return self.phi

    def forward(self, x: Tensor, index: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2, max_num_elements: Optional[int] = None
                ) -> Tensor:
        r""":math:`\rho` of the pooled :math:`\phi` of the tuples of every
        set."""
        tuple_set, count, slots = enumerate_tuples(
            index, dim_size, self.k, self.max_tuples, self.tuples)
        tuples = gather_tuples(x, index, slots, dim, self.tuples)
        # As in DeepSetsInvariant, sum and mean over the tuples move in
        # front of phi's last affine layer, which then runs on B rows, not T.
        out = phi_pool(self.phi, self.aggr_module, tuples, tuple_set,
                       cumsum(count), dim_size, dim)
        check_rho_input(self.rho, out.size(-1), self.aggr_module)
        return self.rho(out)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(phi={self.phi}, rho={self.rho}, '
                f'k={self.k}, tuples={self.tuples!r}, '
                f'aggr={self.aggr_module})')


class JanossyPiSGD(SetAggregation):
    r"""Janossy pooling over sampled permutations (:math:`\pi`-SGD) from the
    `"Janossy Pooling: Learning Deep Permutation-Invariant Functions for
    Variable-Size Inputs" <https://arxiv.org/abs/1811.01900>`_ paper
    (Murphy et al., ICLR 2019). Full Janossy pooling averages a
    permutation-sensitive :math:`\overrightarrow{\phi}` (here a recurrent
    network over the elements in order) over all :math:`n_s!` orderings of
    a set; :math:`\pi`-SGD replaces the average by one drawn at random:

    .. math::
        \hat{f}(\mathcal{X}_s) = \rho\left( \frac{1}{S} \sum_{m=1}^{S}
        \overrightarrow{\phi}\big(\mathbf{x}_{\pi_m(1)}, \dots,
        \mathbf{x}_{\pi_m(n_s)}\big) \right), \qquad
        \pi_m \sim \mathcal{U}(\mathbb{S}_{n_s}),

    with :math:`S` = :obj:`num_samples` permutations per set in training
    (one, as in the paper's :math:`\pi`-SGD) and :obj:`num_eval_samples` in
    evaluation. The estimate is unbiased, and permutation invariant in
    distribution rather than exactly; the variance falls like :math:`1/S`.
    With :obj:`k` set, :math:`\overrightarrow{\phi}` sees only the first
    :math:`k` elements of each sampled ordering (their features
    concatenated, zeros for a set of fewer than :math:`k`), the sampled
    version of :class:`JanossyPooling`, at :math:`O(S)` instead of
    :math:`O(n_s^k)` tuples per set. An empty set gives
    :math:`\rho(\mathbf{0})`.

    Elements are shuffled within their sets on the :obj:`index` vector and,
    for the recurrent network, packed into a
    :class:`~torch.nn.utils.rnn.PackedSequence` directly (no padding). The
    packed lengths live on the host, as PyTorch's recurrent layers require:
    that variant reads the set sizes back (a device sync) and does not
    compile where dynamo does not trace PyTorch's recurrent layers (the
    torch versions :doc:`/howto/compile` lists), so :func:`torch.compile`
    with :obj:`fullgraph=True` raises there. The
    :obj:`k` variant has no data-dependent shape and compiles.

    Args:
        phi (torch.nn.Module or List[int]): Without :obj:`k`, a
            unidirectional :class:`~torch.nn.GRU`, :class:`~torch.nn.LSTM`
            or :class:`~torch.nn.RNN` (its last hidden state is
            :math:`\overrightarrow{\phi}`). With :obj:`k`, the tuple network
            as in :class:`JanossyPooling`.
        rho (List[int] or torch.nn.Module): The set network :math:`\rho`.
        k (int, optional): Truncate sampled orderings to their first
            :obj:`k` elements. (default: :obj:`None`)
        num_samples (int, optional): Sampled permutations per set in
            training. (default: :obj:`1`)
        num_eval_samples (int, optional): Sampled permutations per set in
            evaluation. (default: :obj:`20`)
        act (str or torch.nn.Module, optional): Activation of channel-list
            MLPs. (default: :obj:`"relu"`)
        dropout (float, optional): Dropout of channel-list MLPs.
            (default: :obj:`0.0`)

    Shapes:
        - **input:** elements :math:`(*, N, F)`, set ids :math:`(N)` or
          boundaries :math:`(B + 1)`
        - **output:** :math:`(*, B, F_{out})`
    """
    #: Orderings are sampled on the rows of a matrix.
    folds_leading_dims = True
    def __init__(
        self,
        phi: ModuleSpec,
        rho: ModuleSpec,
        k: Optional[int] = None,
        num_samples: int = 1,
        num_eval_samples: int = 20,
        act: Union[str, torch.nn.Module, None] = 'relu',
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.k = None if k is None else check_int('k', k)
        self.num_samples = check_int('num_samples', num_samples)
        self.num_eval_samples = check_int('num_eval_samples',
                                          num_eval_samples)
        if k is None:
            if not isinstance(phi, torch.nn.RNNBase):
                raise TypeError(f"Without 'k', 'phi' must be a recurrent "
                                f"layer (torch.nn.GRU, LSTM or RNN) "
                                f"(got {type(phi).__name__})")
            if phi.bidirectional:
                raise ValueError("'phi' must be unidirectional: a "
                                 "bidirectional network would read the "
                                 "sampled order both ways")
            check_dropout(dropout)
            self.phi = phi
            self.rho = build_rho(rho, 'rho', act, None, dropout)
            self.aggr_module = None
            self.in_channels = phi.input_size
            width = _state_width(phi)
            check_rho_input(self.rho, width, None)
        else:
            _build_phi_rho(self, phi, rho, k, None, act, dropout, None)

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        reset(self.phi)
        reset(self.rho)

    def input_layer(self) -> torch.nn.Module:
        return self.phi

    def forward(self, x: Tensor, index: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2, max_num_elements: Optional[int] = None
                ) -> Tensor:
        r""":math:`\rho` of the average :math:`\overrightarrow{\phi}` over
        sampled orderings of every set."""
        num = self.num_samples if self.training else self.num_eval_samples
        h = self.sample(x, index, dim_size, num)
        check_rho_input(self.rho, h.size(-1), None)
        return self.rho(h.mean(dim=0))

    def sample(self, x: Tensor, index: Tensor, num_sets: int,
               num_samples: int) -> Tensor:
        r""":math:`\overrightarrow{\phi}` of :obj:`num_samples` random
        orderings of every set, shape :math:`[S, B, F_{\phi}]`; input already
        validated (:obj:`index` is the set id of every row)."""
        # S copies of the batch as S * B sets: one shuffle, one phi call.
        offset = torch.arange(num_samples, device=index.device) * num_sets
        index = (index.unsqueeze(0) + offset.unsqueeze(1)).view(-1)
        x = x.repeat(num_samples, 1)
        num_sets = num_samples * num_sets

        # Rows grouped by set, in random order within each set. An argsort
        # of uniform keys, not randperm, which inductor fails to compile
        # with dynamic shapes (test_inductor_fails_on_a_dynamic_randperm).
        shuffled = torch.argsort(
            torch.rand(index.numel(), device=index.device))
        order = shuffled[torch.argsort(index[shuffled], stable=True)]
        set_of_row = index[order]
        size = set_counts(index, None, num_sets)
        position = torch.arange(order.numel(), device=order.device) - \
            cumsum(size)[set_of_row]
        if self.k is None:
            h = self._recurrent(x.index_select(0, order), set_of_row,
                                position, size, num_sets)
        else:
            h = self._first_k(x.index_select(0, order), set_of_row, position,
                              size, num_sets)
        return h.view(num_samples, num_sets // num_samples, -1)

    def _first_k(self, x: Tensor, set_of_row: Tensor, position: Tensor,
                 size: Tensor, num_sets: int) -> Tensor:
        k = self.k
        # Each set's first k shuffled rows to its k slots; the other rows add
        # zeros to slot 0.
        first = position < k
        slot = torch.where(first, set_of_row * k + position, 0)
        x = torch.where(first.unsqueeze(-1), x, 0.0)
        tuples = x.new_zeros(num_sets * k, x.size(-1)).index_add(0, slot, x)
        h = self.phi(tuples.view(num_sets, k * x.size(-1)))
        return torch.where((size > 0).unsqueeze(-1), h, 0.0)

    def _recurrent(self, x: Tensor, set_of_row: Tensor, position: Tensor,
                   size: Tensor, num_sets: int) -> Tensor:
        # PackedSequence layout: time step by time step, the sets in order
        # of decreasing length within each step.
        by_length = torch.argsort(size, descending=True, stable=True)
        rank = torch.empty_like(by_length)
        rank[by_length] = torch.arange(num_sets, device=size.device)
        packed = torch.argsort(position * num_sets + rank[set_of_row])
        steps = int(size.max()) if num_sets > 0 else 0
        batch_sizes = set_counts(position, None, steps).cpu()
        out = x.new_zeros(num_sets, _state_width(self.phi))
        if steps == 0:
            return out
        _, hidden = self.phi(PackedSequence(x[packed], batch_sizes))
        if isinstance(hidden, tuple):  # LSTM: (h, c)
            hidden = hidden[0]
        nonempty = by_length[:int(batch_sizes[0])]
        return out.index_copy(0, nonempty, hidden[-1])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(phi={self.phi}, rho={self.rho}, '
                f'k={self.k}, num_samples={self.num_samples}, '
                f'num_eval_samples={self.num_eval_samples})')


declare_not_streamable(SEQUENCES, JanossyPooling, JanossyPiSGD)
declare_not_weighted('it forms tuples (or orderings) of distinct elements, '
                     'which copies of an element would change',
                     JanossyPooling, JanossyPiSGD)
