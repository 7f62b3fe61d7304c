import importlib
import os

from tests.compile_cache import session_compile_cache

# Before torch is imported (see tests/compile_cache.py).
session_compile_cache()

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# CI (and FULL_TEST=1) runs the property tests with more examples.
settings.register_profile(
    'default', max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    'ci', max_examples=100, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile('ci' if os.environ.get('CI') or
                      os.environ.get('FULL_TEST') else 'default')

# The tests use tiny tensors, where waking a second thread costs more than
# the work (up to ~85 ms per op measured on a busy 2-core machine).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(12345)


@pytest.fixture(autouse=True)
def _keep_threads():
    # The examples' --threads sets a process-wide torch setting; no test
    # leaves another a different thread count.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def toy():
    r"""The canonical tiny batch: three sets of sizes 2, 3 and 1."""
    x = torch.tensor([[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0], [2.0, 2.0],
                      [0.0, -3.0], [5.0, 1.0]])
    index = torch.tensor([0, 0, 1, 1, 1, 2])
    ptr = torch.tensor([0, 2, 5, 6])
    return x, index, ptr


@pytest.fixture(params=['host', 'device'])
def kernel_path(request, monkeypatch):
    r"""Runs a test on both kernel paths: the host path (eager CPU, which may
    read values) and, on the same CPU tensors, the device path that GPU
    tensors and compiled graphs take (no value is read back)."""
    if request.param == 'device':
        paths = importlib.import_module(
            'torch_geometric_deepsets._kernels.paths')
        monkeypatch.setattr(paths, 'host_path', lambda tensor: False)
    return request.param
