import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.example_scripts import ROOT

BENCHMARKS = str(Path(ROOT) / 'benchmarks')
sys.path.insert(0, BENCHMARKS)
from allocator import tune_cpu_allocator  # noqa: E402

GLIBC = sys.platform == 'linux' and platform.libc_ver()[0] == 'glibc'

# Allocates, fills and frees a 64 MiB tensor six times and prints the minor
# page faults of the last three rounds. With glibc's defaults every round
# maps the block afresh and faults it in page by page (3 x 16,384 faults);
# kept in the heap, it is reused once the heap has grown (the first rounds
# may still grow it: a small allocation can take the front of a freed block).
FAULTS = '''
import resource, sys, torch
import torch_geometric_deepsets
sys.path.insert(0, sys.argv[2])
from allocator import tune_cpu_allocator
if sys.argv[1] == 'tuned':
    assert tune_cpu_allocator() is True
for _ in range(3):
    torch.empty(2**24).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    torch.empty(2**24).fill_(1.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
'''


def last_rounds_faults(mode: str, **env: str) -> int:
    out = subprocess.run([sys.executable, '-c', FAULTS, mode, BENCHMARKS],
                         check=True, env=dict(os.environ, **env),
                         capture_output=True, text=True, timeout=120)
    return int(out.stdout.split()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not GLIBC, reason='mallopt tuning is glibc-only')
def test_large_freed_tensors_are_reused_without_page_faults():
    tuned, default = last_rounds_faults('tuned'), last_rounds_faults('')
    # Three rounds of 64 MiB are 49,152 pages; reuse faults on almost none.
    assert tuned < 256, (tuned, default)
    assert tuned < default, (tuned, default)


@pytest.mark.skipif(not GLIBC, reason='mallopt tuning is glibc-only')
def test_the_cpu_speed_page_s_environment_does_the_same():
    # The variable the CPU-speed how-to tells a user to export, as it reads
    # there.
    page = Path(BENCHMARKS).parent / 'docs' / 'howto' / 'cpu_speed.rst'
    value, = re.findall(r'export GLIBC_TUNABLES=(\S+)', page.read_text())
    assert last_rounds_faults('', GLIBC_TUNABLES=value) < 256


@pytest.mark.parametrize('system,libc', [('linux', ('musl', '')),
                                         ('darwin', ('', '')),
                                         ('win32', ('', ''))])
def test_other_c_libraries_are_left_alone(system, libc, monkeypatch):
    import ctypes

    def no_mallopt(name):
        raise AssertionError('mallopt must not be called here')
    monkeypatch.setattr(sys, 'platform', system)
    monkeypatch.setattr(platform, 'libc_ver', lambda: libc)
    monkeypatch.setattr(ctypes, 'CDLL', no_mallopt)
    assert tune_cpu_allocator() is False


@pytest.mark.parametrize('kwargs,error,match', [
    ({'mmap_threshold': 1.5}, TypeError, "'mmap_threshold' must be an int"),
    ({'trim_threshold': True}, TypeError, "'trim_threshold' must be an int"),
    ({'mmap_threshold': 0}, ValueError, r"'mmap_threshold' must be in 1\.\."),
    ({'trim_threshold': 2**31}, ValueError, r'C int; got 2147483648'),
])
def test_rejects_bad_thresholds(kwargs, error, match):
    with pytest.raises(error, match=match):
        tune_cpu_allocator(**kwargs)
