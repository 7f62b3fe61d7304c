r"""Accurate (chunked) sums: long sets summed at float32 resolution on the
host path, every set its own rows, with and without torch-scatter."""
import pytest
import torch

import torch_geometric.typing
from tests.helpers import (
    grouping,
    make_batch,
    ptr_of,
    scatter_backends,
)
from torch_geometric.utils import scatter
from torch_geometric_deepsets import pool
from torch_geometric_deepsets._kernels import segment_pool


@pytest.mark.parametrize('backend', scatter_backends())
@pytest.mark.parametrize('layout', ['sorted', 'unsorted', 'ptr'])
@pytest.mark.parametrize('sizes', [[10, 4990], [4990, 10], [3, 0, 2500, 7,
                                                            2600]])
def test_long_sums_respect_set_boundaries(sizes, layout, backend,
                                          monkeypatch):
    # Ones sum exactly in any order: every set must get its own size back,
    # whether the long sets come first or last.
    monkeypatch.setattr(torch_geometric.typing, 'WITH_TORCH_SCATTER',
                        backend)
    x, batch = make_batch(sizes, 2, shuffle=layout == 'unsorted')
    x = torch.ones_like(x)
    index, ptr = grouping(batch, len(sizes), layout)
    for reduce, expected in (('sum', torch.tensor(sizes).float()),
                             ('mean', (torch.tensor(sizes) > 0).float())):
        out = segment_pool(x, index, ptr, len(sizes), reduce)
        assert torch.equal(out, expected.view(-1, 1).expand(-1, 2)), reduce



@pytest.mark.parametrize('backend', scatter_backends())
@pytest.mark.parametrize('layout', ['sorted', 'ptr'])
@pytest.mark.parametrize('order', ['short_first', 'long_first'])
def test_mean_of_a_huge_set_next_to_a_small_one_is_accurate(
        backend, layout, order, monkeypatch):
    monkeypatch.setattr(torch_geometric.typing, 'WITH_TORCH_SCATTER',
                        backend)
    sizes = [1, 1_000_000] if order == 'short_first' else [1_000_000, 1]
    gen = torch.Generator().manual_seed(0)
    _, batch = make_batch(sizes, 1)
    x = 1000 + torch.rand(batch.numel(), 1, generator=gen,
                          dtype=torch.float64)
    exact = scatter(x, batch, 0, 2, 'mean')
    index, ptr = grouping(batch, 2, layout)
    mean = segment_pool(x.float(), index, ptr, 2, 'mean').double()
    # A sequential float32 sum is ~1e-2 off here (measured); chunked, the
    # error stays at float32 resolution.
    assert ((mean - exact).abs() / exact).max() < 1e-6



def test_long_sets_are_chunked_on_the_host_path_only(kernel_path):
    x = 1000 + torch.rand(200_000, 1)
    index = torch.zeros(200_000, dtype=torch.long)
    exact = x.double().mean()
    mean = segment_pool(x, index, None, 1, 'mean')[0, 0].double()
    error = float(abs(mean - exact) / exact)
    if kernel_path == 'host':
        assert error < 1e-6
    else:  # the device path sums like PyG's scatter
        assert error > 1e-5



def test_sum_of_a_huge_set_stays_accurate():
    # Only the host path (eager CPU) chunks long sums; the device path is
    # pinned in test_long_sets_are_chunked_on_the_host_path_only.
    x = 1000 + torch.randn(200_000, 2, dtype=torch.float64)
    index = torch.zeros(200_000, dtype=torch.long)
    exact = x.mean(0)
    for ptr in (None, torch.tensor([0, 200_000])):
        mean = segment_pool(x.float(), index, ptr, 1, 'mean')[0].double()
        assert (mean - exact).abs().max() < 1e-4



@pytest.mark.parametrize('backend', scatter_backends())
def test_long_sums_of_interleaved_sets_are_accurate(backend, monkeypatch):
    # Several sets over LONG_SET rows (and a short one), their rows mixed in
    # an unsorted batch vector: each set must get its own rows, summed as
    # accurately as when the rows come sorted with ptr. Sets sit at
    # different offsets, so a row counted in another set shows.
    monkeypatch.setattr(torch_geometric.typing, 'WITH_TORCH_SCATTER',
                        backend)
    gen = torch.Generator().manual_seed(0)
    sizes = [120_000, 3, 90_000, 150_000]
    _, batch = make_batch(sizes, 1)
    x = 1000 * (1 + batch.double().view(-1, 1)) + torch.rand(
        batch.numel(), 2, generator=gen, dtype=torch.float64)
    exact = scatter(x, batch, 0, len(sizes), 'sum')
    ptr = ptr_of(batch, len(sizes))
    perm = torch.randperm(batch.numel(), generator=gen)
    assert not bool((batch[perm][1:] >= batch[perm][:-1]).all())
    shuffled = pool(x[perm].float(), batch[perm], dim_size=len(sizes))
    ordered = pool(x.float(), ptr=ptr)

    def error(out):
        return float(((out.double() - exact) / exact).abs().max())

    # Float32 resolution, where one float32 pass is measurably off.
    assert error(shuffled) < 1e-6 and error(ordered) < 1e-6
    plain = torch.zeros(len(sizes), 2).index_add_(0, batch[perm],
                                                 x[perm].float())
    assert error(plain) > 1e-5
    torch.testing.assert_close(shuffled, ordered, rtol=2e-6, atol=0)
