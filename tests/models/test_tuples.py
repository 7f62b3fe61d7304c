r"""Janossy tuples: every ordered tuple, or every subset, of every set
exactly once, gathered from the rows of its own set."""
import itertools

import torch

from torch_geometric_deepsets.models.tuples import (
    enumerate_tuples,
    gather_tuples,
)


def tuple_rows(index, k, tuples):
    r"""The rows (1-based, 0 for an empty slot) that the tuples of every set
    hold: the features of row i are i + 1, so the lexicographic order is
    the order of the rows."""
    x = torch.arange(1, index.numel() + 1, dtype=torch.float).view(-1, 1)
    num_sets = int(index.max()) + 2  # and a trailing empty set
    tuple_set, count, slots = enumerate_tuples(index, num_sets, k,
                                               tuples=tuples)
    assert slots.shape == (int(count.sum()), k)
    rows = gather_tuples(x, index, slots, 0, tuples).long()
    assert count[-1] == 0
    return {s: sorted(map(tuple, rows[tuple_set == s].tolist()))
            for s in range(num_sets - 1)}



def test_enumerated_tuples():
    index = torch.tensor([2, 0, 2, 1, 2, 0, 2])  # sizes 2, 1, 4; unsorted
    rows = tuple_rows(index, 3, 'permutations')
    # Set 2 (rows 0, 2, 4, 6): all 24 ordered triples of distinct rows.
    assert rows[2] == sorted(itertools.permutations([1, 3, 5, 7], 3))
    # Set 0 (rows 1, 5): both orders, third slot empty; set 1: one row.
    assert rows[0] == [(2, 6, 0), (6, 2, 0)]
    assert rows[1] == [(4, 0, 0)]



def test_enumerated_combinations():
    index = torch.tensor([2, 0, 2, 1, 2, 0, 2])
    rows = tuple_rows(index, 3, 'combinations')
    # Every subset once, in order; a smaller set once, then empty slots.
    assert rows[2] == list(itertools.combinations([1, 3, 5, 7], 3))
    assert rows[0] == [(2, 6, 0)]
    assert rows[1] == [(4, 0, 0)]
    # Sets of many sizes at once: every subset of every set, no other.
    sizes = [9, 0, 4, 1, 6, 3]
    index = torch.repeat_interleave(torch.arange(6), torch.tensor(sizes))
    index = index[torch.randperm(index.numel())]
    for k in (1, 2, 4, 5):
        rows = tuple_rows(index, k, 'combinations')
        for s, n in enumerate(sizes):
            members = (torch.nonzero(index == s).view(-1) + 1).tolist()
            expected = list(itertools.combinations(members, min(n, k)))
            if n == 0:
                expected = []
            assert rows[s] == [r + (0, ) * (k - n) for r in expected]
