r"""Large inputs: no padding blow-up, measured as peak resident memory."""
import ctypes
import gc
import os

import pytest
import torch

from tests.helpers import make_batch
from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsEquivariant,
    DeepSetsInvariant,
)


def _status(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024  # kB -> bytes
    raise RuntimeError(field)


def _fixed_mmap_threshold():
    r"""glibc serves blocks above a threshold with mmap and returns them to
    the system on free, but raises that threshold after such frees, which
    would keep freed tensors resident. A fixed threshold keeps every tensor
    over 64 KiB in its own mapping, so the resident set follows live
    tensors."""
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError:
        return
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 64 * 1024)


def peak_bytes(fn):
    r"""Peak resident memory of :obj:`fn()` above the memory before it.
    Linux resets the high-water mark (VmHWM) on writing 5 to clear_refs."""
    _fixed_mmap_threshold()
    gc.collect()
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    before = _status('VmRSS')
    fn()
    return _status('VmHWM') - before


pytestmark = pytest.mark.skipif(
    not os.path.exists('/proc/self/clear_refs'),
    reason='peak-memory measurement needs Linux /proc')

WIDTH = 16


def mlp_step(x):
    r"""The element-level work alone: phi's layers on every row."""
    lin1 = torch.nn.Linear(x.size(1), WIDTH)
    lin2 = torch.nn.Linear(WIDTH, WIDTH)
    lin2(torch.relu(lin1(x))).sum().backward()


def model_step(kind, x, batch, num_sets):
    if kind == 'invariant':
        model = DeepSetsInvariant([3, WIDTH, WIDTH], [WIDTH, 1], aggr='max')
        out = model(x, batch, dim_size=num_sets)
    elif kind == 'equivariant':
        model = DeepSetsEquivariant([3, WIDTH, WIDTH], aggr='max')
        out = model(x, batch, dim_size=num_sets)
    else:
        model = DeepSetsConditional([3, WIDTH, WIDTH], [WIDTH, 1],
                                    context_channels=2, aggr='mean')
        out = model(x, torch.randn(num_sets, 2), batch, dim_size=num_sets)
    out.sum().backward()


def million_element_set():
    x = torch.randn(1_000_000, 3, requires_grad=True)
    return x, torch.zeros(1_000_000, dtype=torch.long), 1


def hundred_thousand_small_sets():
    x, batch = make_batch(torch.randint(1, 4, (100_000, )).tolist(), 3)
    return x.requires_grad_(), batch, 100_000


@pytest.mark.slow
@pytest.mark.parametrize('data', [million_element_set,
                                  hundred_thousand_small_sets])
@pytest.mark.parametrize('kind', ['invariant', 'equivariant', 'conditional'])
def test_peak_memory_within_twice_the_element_tensors(data, kind):
    x, batch, num_sets = data()
    # The scale: the same layers run on every row the model must hold, one
    # per element and one per set. A padded model of these batches would
    # hold max-size x num-sets rows instead.
    rows = torch.randn(x.size(0) + num_sets, x.size(1), requires_grad=True)
    baseline = peak_bytes(lambda: mlp_step(rows))
    peak = peak_bytes(lambda: model_step(kind, x, batch, num_sets))
    assert baseline > 0
    assert peak <= 2 * baseline, (peak / 2**20, baseline / 2**20)
    assert torch.isfinite(x.grad).all()


def test_mean_of_a_huge_set_is_accurate():
    x64 = 100 + torch.randn(1_000_000, 4, dtype=torch.float64)
    model = DeepSetsInvariant(torch.nn.Identity(), torch.nn.Identity(),
                              aggr='mean')
    out = model(x64.float())
    assert (out.double() - x64.mean(0)).abs().max() < 1e-4
