import math
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from torch_geometric.nn.inits import reset
from torch_geometric.utils import cumsum
from torch_geometric_deepsets._kernels import set_counts
from torch_geometric_deepsets.aggr.capabilities import (
    SEQUENCES,
    declare_not_streamable,
)
from torch_geometric_deepsets.checks import check_dropout, check_int
from torch_geometric_deepsets.models.mlp import (
    ModuleSpec,
    build_phi,
    build_rho,
)
from torch_geometric_deepsets.models.phi_pool import phi_pool
from torch_geometric_deepsets.models.widths import (
    check_rho_input,
    in_channels_of,
    out_channels_of,
)
from torch_geometric_deepsets.pool import AggrType, pooled_width, resolve_aggr
from torch_geometric_deepsets.sets import SetAggregation

#: The largest :obj:`max_tuples` allowed: tuple counts are then computed in
#: int64 without overflow (saturating at :obj:`max_tuples + 1`).
MAX_TUPLE_BUDGET = 2**31
#: Rows narrower than this are gathered value by value (see
#: :func:`gather_tuples`).
NARROW_ROWS = 16
#: The tuples :class:`JanossyPooling` applies :math:`\phi` to.
TUPLES = ('permutations', 'combinations')


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


def check_tuples(tuples: Any) -> str:
    r"""Validates the :obj:`tuples` option of :class:`JanossyPooling`."""
    if not isinstance(tuples, str) or tuples not in TUPLES:
        raise ValueError(f"'tuples' must be 'permutations' (ordered tuples) "
                         f"or 'combinations' (canonically ordered subsets) "
                         f"(got {tuples!r})")
    return tuples


def num_tuples(size: Tensor, k: int, cap: Optional[int] = None,
               tuples: str = 'permutations') -> Tensor:
    r"""The number of tuples :class:`JanossyPooling` forms from a set of
    :math:`n` elements, for every entry of :obj:`size`, with
    :math:`m = \min(n, k)`: the :math:`n!/(n - m)!` ordered tuples of
    :math:`m` distinct elements (:obj:`"permutations"`), or the
    :math:`\binom{n}{m}` subsets of :math:`m` elements
    (:obj:`"combinations"`); 0 for an empty set. With :obj:`cap`, counts
    above it read :obj:`cap` (no int64 overflow for :obj:`cap <= 2**31` and
    :math:`n < 2^{32}`)."""
    count = torch.ones_like(size)
    if tuples == 'combinations':
        # C(n, m) = C(n, n - m) in min(m, n - m) steps C(n, j) -> C(n, j + 1):
        # each division is exact, and the running count grows at every
        # step, so a count that reached the cap stays at it.
        m = size.clamp(max=k)
        steps = torch.minimum(m, size - m)
        for j in range(k):
            grown = count * (size - j) // (j + 1)
            count = torch.where(steps > j, grown, count)
            if cap is not None:
                count = count.clamp(max=cap)
    else:
        for j in range(k):
            factor = torch.where(size > j, size - j, 1)
            if cap is not None:
                factor = factor.clamp(max=cap)
            count = count * factor
            if cap is not None:
                count = count.clamp(max=cap)
    return torch.where(size > 0, count, 0)


def enumerate_tuples(
    index: Tensor,
    num_sets: int,
    k: int,
    max_tuples: int = MAX_TUPLE_BUDGET,
    tuples: str = 'permutations',
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The :math:`k`-tuples of distinct elements of every set, from the set
    id of every row, without padding and without pairing rows of different
    sets.

    The rows are numbered as if stably sorted by set, so that set :math:`s`
    holds the numbers :math:`p_s, \dots, p_s + n_s - 1`
    (:math:`p_s = \sum_{s' < s} n_{s'}`); a tuple lists such numbers, and
    :math:`N` (one past the last row) marks an empty slot. With
    :obj:`"permutations"`, a set of :math:`n \geq k` elements has its
    :math:`n!/(n-k)!` ordered tuples, decoded from their numbers by a
    mixed-radix (Lehmer) code. With :obj:`"combinations"`, it has its
    :math:`\binom{n}{k}` subsets, each in increasing order of row number,
    decoded in the combinatorial number system (colexicographic order). A
    smaller set (:math:`0 < n < k`) has all its elements in the first
    :math:`n` slots, the others empty: its :math:`n!` orderings, or one
    tuple in increasing order. An empty set has none. The work is linear in
    the number of tuples (with a binary search per slot for combinations).

    Returns:
        :obj:`(tuple_set, tuple_count, slots)`: the set of every tuple
        (sorted), the number of tuples of every set, and the row number in
        every slot of every tuple, :math:`[T, k]`.

    Raises:
        ValueError: if the batch has more than :obj:`max_tuples` tuples.
    """
    size = set_counts(index, None, num_sets)
    count = num_tuples(size, k, cap=max_tuples + 1, tuples=tuples)
    total = count.sum().item()
    # The explicit message needs the sizes on the host, which a compiled
    # graph cannot format; there the same bound is a runtime assertion.
    if not torch.compiler.is_compiling() and total > max_tuples:
        raise ValueError(_budget_message(size, k, max_tuples, tuples))
    torch._check_value(total <= max_tuples)

    device = index.device
    tuple_set = torch.repeat_interleave(
        torch.arange(num_sets, device=device), count, output_size=total)
    code = torch.arange(total, device=device) - cumsum(count)[tuple_set]
    n = size[tuple_set].unsqueeze(-1)
    if tuples == 'combinations':
        position = _unrank_combinations(code, k, index.numel(),
                                        max_tuples + 1)
    else:
        position = _unrank_permutations(code, n.squeeze(-1), k)
    # Both decoders put an empty slot j >= n at a position >= n.
    start = cumsum(size)[tuple_set].unsqueeze(-1)
    slots = torch.where(position < n, start + position, index.numel())
    return tuple_set, count, slots


def _unrank_permutations(code: Tensor, n: Tensor, k: int) -> Tensor:
    r"""The positions :math:`[T, k]` within its set of the ordered tuple
    numbered :obj:`code` (:math:`< n!/(n - \min(n, k))!`); empty slots
    :math:`j \geq n` get position :math:`j`."""
    # Digit j counts the choices left for slot j: n - j, or 1 (slot empty).
    # What is left after slots k-1..1 is below slot 0's base: its digit.
    digits: List[Tensor] = []
    for j in reversed(range(1, k)):
        base = torch.where(n > j, n - j, 1)
        quotient = code // base
        digits.append(code - quotient * base)
        code = quotient
    digits.append(code)
    digits.reverse()

    # Digit j is the rank of slot j's position among those that slots
    # 0..j-1 left free. Decoded from the last slot back (the classic
    # Lehmer decode): a slot's position shifts the later slots at or above
    # it up by one. O(k^2) elementwise steps, no sort.
    positions = list(digits)
    for j in reversed(range(k - 1)):
        for i in range(j + 1, k):
            positions[i] = positions[i] + (positions[i] >= positions[j])
    return torch.stack(positions, 1)


def _unrank_combinations(code: Tensor, k: int, num_rows: int,
                         cap: int) -> Tensor:
    r"""The positions :math:`c_1 < \dots < c_k` :math:`[T, k]` of the subset
    numbered :obj:`code` in the combinatorial number system,
    :math:`\mathrm{code} = \sum_i \binom{c_i}{i}` (colexicographic order).

    The subsets of the first :math:`n` positions are exactly the codes below
    :math:`\binom{n}{k}`, whatever the set size, so one table of binomial
    coefficients :math:`\binom{c}{i}` for :math:`c < N + k` serves every set
    (built on the device: no value is read back), and code 0 is
    :math:`(0, \dots, k - 1)`: a set of :math:`n < k` elements in order, its
    slots :math:`j \geq n` empty."""
    # C(c, i) = sum_{c' < c} C(c', i - 1), capped as the counts are (a code
    # is below the cap, so capped entries are never chosen).
    row = torch.ones(num_rows + k, dtype=torch.long, device=code.device)
    table: List[Tensor] = []
    for _ in range(k):
        row = cumsum(row)[:-1].clamp(max=cap)
        table.append(row)
    # Greedily from the last slot: c_i is the largest c with C(c, i) <= code.
    positions: List[Tensor] = []
    for i in range(k, 1, -1):
        c = torch.searchsorted(table[i - 1], code, right=True) - 1
        code = code - table[i - 1][c]
        positions.append(c)
    positions.append(code)  # C(c, 1) = c
    positions.reverse()
    return torch.stack(positions, 1)


def _budget_message(size: Tensor, k: int, max_tuples: int,
                    tuples: str) -> str:
    combinations = tuples == 'combinations'
    count = math.comb if combinations else math.perm
    sizes = [n for n in size.tolist() if n > 0]
    total = sum(count(n, min(n, k)) for n in sizes)
    largest = max(sizes)
    option = " and tuples='combinations'" if combinations else ''
    growth = 'n^k/k!' if combinations else 'n^k'
    hint = '' if combinations else ("tuples='combinations' (n choose k "
                                    "per set), ")
    return (f"Janossy pooling with k={k}{option} needs {total:,} tuples for "
            f"this batch (the largest set has {largest} elements and "
            f"{count(largest, min(largest, k)):,} tuples), above "
            f"'max_tuples'={max_tuples:,}. The cost grows as {growth} per "
            f"set: use {hint}a smaller k, smaller sets or batches, "
            f"JanossyPiSGD, or raise 'max_tuples'")


def sort_within_sets(x: Tensor, index: Tensor) -> Tensor:
    r"""The rows of :obj:`x` (:math:`[*, N, F]`) stably sorted by set, and
    within every set in lexicographic order of their features (each slice
    of the leading dimensions on its own): the canonical order of
    :obj:`JanossyPooling(..., tuples="combinations")`.

    It depends on the set's rows only, not on their order in :obj:`x`, so
    what follows is exactly permutation invariant: rows that tie are equal
    and interchangeable. Stable sorts by the last feature first, the set id
    last: :math:`F + 1` sorts, :math:`O(F N \log N)`."""
    num_rows, channels = x.shape[-2:]
    flat = x.reshape(math.prod(x.shape[:-2]), num_rows, channels)
    keys = flat.detach()
    order = torch.arange(num_rows, device=x.device).expand(flat.size(0), -1)
    for c in reversed(range(channels)):
        key = keys[..., c].gather(1, order)
        order = order.gather(1, torch.argsort(key, dim=1, stable=True))
    order = order.gather(1, torch.argsort(index[order], dim=1, stable=True))
    out = flat.gather(1, order.unsqueeze(-1).expand(-1, -1, channels))
    return out.view(x.shape)


def gather_tuples(x: Tensor, index: Tensor, slots: Tensor, dim: int,
                  tuples: str = 'permutations') -> Tensor:
    r"""The features of every tuple of :func:`enumerate_tuples`, its
    :math:`k` elements concatenated (zeros in an empty slot):
    :math:`[*, T, kF]`, the tuples along :obj:`dim`. For
    :obj:`"combinations"` the rows are taken in the canonical order of
    :func:`sort_within_sets`.

    One :meth:`~torch.Tensor.index_select` of all :math:`Tk` slots, read
    as :math:`T` rows of :math:`kF` features: an empty slot selects a zero
    row appended to :obj:`x`, so there is no mask and no concatenation of
    slot features (a slot-by-slot gather with masks was the largest part
    of a :math:`k = 3` step; ``benchmarks/bench.py --sections janossy``
    measures the share left)."""
    x = x.movedim(dim, -2)
    if tuples == 'combinations':
        x = sort_within_sets(x, index)
    else:  # row numbers count rows sorted by set: sort the N rows, not
        # the T k slots
        x = x.index_select(-2, torch.argsort(index, stable=True))
    x = torch.cat([x, x.new_zeros(x.shape[:-2] + (1, x.size(-1)))], dim=-2)
    channels = x.size(-1)
    # Unflatten, not view(..., T, kF): inductor (torch 2.13) compiles that
    # view of an unbacked tuple count T as if T were 1.
    if channels < NARROW_ROWS:
        # The backward of a row gather (index_add of T k rows) is 3-8x
        # slower than that of a gather of single values for rows of 2-8
        # features on CPU (torch 2.13), and faster from 16 on.
        values = slots.unsqueeze(-1) * channels + torch.arange(
            channels, device=slots.device)
        out = x.flatten(-2).index_select(-1, values.view(-1))
        out = out.unflatten(-1, (slots.size(0), slots.size(1) * channels))
    else:
        out = x.index_select(-2, slots.view(-1))
        out = out.unflatten(-2, slots.shape).flatten(-2)
    return out.movedim(-2, dim)


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
    compile: dynamo does not trace PyTorch's recurrent layers (torch 2.13),
    so :func:`torch.compile` with :obj:`fullgraph=True` raises. The
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

        # Rows grouped by set, in random order within each set.
        # (argsort of uniform keys: inductor fails on randperm with dynamic
        # shapes in torch 2.13)
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
