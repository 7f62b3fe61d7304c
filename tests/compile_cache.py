r"""Every test session compiles into its own new cache. With torch's default
on-disk cache (one folder per user, kept between runs) a graph compiled from
older code, say before an edit to a custom operator's Python backward, is
reused, and the suite can pass stale. tests/conftest.py calls
:func:`session_compile_cache` before torch is imported; no torch import
here."""
import atexit
import os
import shutil
import tempfile
from typing import MutableMapping

#: The variable naming the compile cache folder of this test session.
SESSION_CACHE = 'TGD_TEST_COMPILE_CACHE'
PREFIX = 'tgd-compile-cache-'


def session_compile_cache(environ: MutableMapping[str, str] = os.environ
                          ) -> str:
    r"""Points inductor (:obj:`TORCHINDUCTOR_CACHE_DIR`) and Triton
    (:obj:`TRITON_CACHE_DIR`) at a new temporary folder, removed when the
    process that made it exits, and returns the folder. The variables go
    with :obj:`environ` to the pytest-xdist workers, which take their
    controller's folder, and to the subprocesses the tests start; any other
    process that calls this (a new session) gets a new folder."""
    inherited = environ.get(SESSION_CACHE)
    if environ.get('PYTEST_XDIST_WORKER') and inherited and \
            os.path.isdir(inherited):
        return inherited
    root = tempfile.mkdtemp(prefix=PREFIX)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    environ[SESSION_CACHE] = root
    environ['TORCHINDUCTOR_CACHE_DIR'] = os.path.join(root, 'inductor')
    environ['TRITON_CACHE_DIR'] = os.path.join(root, 'triton')
    return root
