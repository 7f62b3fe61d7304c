r"""The suite cannot pass on stale compiled code: every test session (with
its pytest-xdist workers and the subprocesses its tests start) compiles
into its own new temporary cache, never into torch's default on-disk one."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from torch._inductor.runtime.cache_dir_utils import (
    cache_dir,
    default_cache_dir,
    triton_cache_dir,
)

from tests.compile_cache import PREFIX, SESSION_CACHE, session_compile_cache

ROOT = os.environ.get(SESSION_CACHE)

RESOLVE = ('from torch._inductor.runtime.cache_dir_utils import cache_dir, '
           'triton_cache_dir; print(cache_dir()); print(triton_cache_dir(0))')


def _inside(path, root):
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def test_torch_resolves_the_caches_into_the_sessions_folder():
    assert ROOT and Path(ROOT).is_dir()
    assert Path(ROOT).name.startswith(PREFIX)
    assert _inside(ROOT, tempfile.gettempdir())
    # Where inductor and Triton write, as torch resolves it now.
    assert _inside(cache_dir(), ROOT)
    assert _inside(triton_cache_dir(0), ROOT)
    assert not _inside(cache_dir(), default_cache_dir())


@pytest.mark.slow
def test_subprocesses_use_the_sessions_folder():
    out = subprocess.run([sys.executable, '-c', RESOLVE], check=True,
                         env=dict(os.environ, OMP_NUM_THREADS='1'),
                         stdout=subprocess.PIPE, text=True).stdout.split()
    assert out == [cache_dir(), triton_cache_dir(0)]


@pytest.mark.parametrize('worker', [None, 'gw3'])
def test_a_new_session_gets_a_new_folder_its_workers_share_it(worker):
    # A process that inherits a session's variables without being one of
    # its xdist workers (a pytest run started by a test or from a shell
    # that kept them) starts from an empty cache of its own.
    environ = {SESSION_CACHE: ROOT, 'TORCHINDUCTOR_CACHE_DIR': cache_dir()}
    if worker:
        environ['PYTEST_XDIST_WORKER'] = worker
    root = session_compile_cache(environ)
    try:
        if worker:
            assert root == ROOT and environ[SESSION_CACHE] == ROOT
            return
        assert root != ROOT and Path(root).is_dir()
        assert not any(Path(root).iterdir())  # new and empty
        assert environ == {
            SESSION_CACHE: root,
            'TORCHINDUCTOR_CACHE_DIR': os.path.join(root, 'inductor'),
            'TRITON_CACHE_DIR': os.path.join(root, 'triton')}
    finally:
        if root != ROOT:
            shutil.rmtree(root)


@pytest.mark.slow
def test_a_compiled_graph_lands_in_the_sessions_folder():
    before = {p for p in Path(ROOT).rglob('*') if p.is_file()}
    # A graph no other test compiles (the constants make it new).
    fn = torch.compile(lambda x: (x * 3.0625 - 0.8125).cos().sum(),
                       fullgraph=True)
    torch.testing.assert_close(fn(torch.ones(5)), torch.ones(5).mul(
        3.0625).sub(0.8125).cos().sum())
    written = {p for p in Path(ROOT).rglob('*') if p.is_file()} - before
    assert written, 'compiling wrote nothing into the session cache'
