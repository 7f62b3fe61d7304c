r"""The tuples of Janossy pooling
(:class:`~torch_geometric_deepsets.JanossyPooling`): counting, enumerating
and gathering the :math:`k`-tuples of distinct elements of every set,
without padding and without pairing rows of different sets."""
import math
from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric.utils import cumsum
from torch_geometric_deepsets._kernels import set_counts

#: The largest :obj:`max_tuples` allowed: tuple counts are then computed in
#: int64 without overflow (saturating at :obj:`max_tuples + 1`).
MAX_TUPLE_BUDGET = 2**31
#: Rows narrower than this are gathered value by value (see
#: :func:`gather_tuples`).
NARROW_ROWS = 16
#: The tuples :class:`JanossyPooling` applies :math:`\phi` to.
TUPLES = ('permutations', 'combinations')


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
    slot features (:doc:`/benchmarks` measures the share of a step spent
    forming tuples)."""
    x = x.movedim(dim, -2)
    if tuples == 'combinations':
        x = sort_within_sets(x, index)
    else:  # row numbers count rows sorted by set: sort the N rows, not
        # the T k slots
        x = x.index_select(-2, torch.argsort(index, stable=True))
    x = torch.cat([x, x.new_zeros(x.shape[:-2] + (1, x.size(-1)))], dim=-2)
    channels = x.size(-1)
    # The tuple count T comes from the data (unbacked under compile): the
    # gathered rows take the shape of slots.
    if channels < NARROW_ROWS:
        # Narrow rows: the backward of a row gather (an index_add of T k
        # short rows) is slower than that of a gather of single values.
        values = slots.unsqueeze(-1) * channels + torch.arange(
            channels, device=slots.device)
        out = x.flatten(-2).index_select(-1, values.view(-1))
        out = out.unflatten(-1, (slots.size(0), slots.size(1) * channels))
    else:
        out = x.index_select(-2, slots.view(-1))
        out = out.unflatten(-2, slots.shape).flatten(-2)
    return out.movedim(-2, dim)
