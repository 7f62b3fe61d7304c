r"""The package as a user installs it: a wheel built from this checkout,
installed (not editable) into a virtual environment of its own.

The environment reuses the test environment's installed packages (torch,
PyG, Lightning, ...) through a path file that names their folder, so
nothing is downloaded or copied; the path file adds that folder only, so
its own path files, among them the editable install of this checkout, are
not run. The package then imports from the wheel's copy, and nothing of the
checkout (``examples/``, ``benchmarks/``, ``tests/``) is on the path of a
process started outside it.

One build serves a whole test session: pytest-xdist workers share it
through a lock in the session's common temporary folder.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from filelock import FileLock

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: What a wheel is built from (the rest of the checkout is not packaged).
SOURCES = ('pyproject.toml', 'README.md', 'torch_geometric_deepsets')


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, '-m', 'pip', '--disable-pip-version-check',
                    '-q', *args], check=True, stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT, text=True, timeout=600)


def build(folder: Path) -> str:
    r"""Builds the wheel and the environment in :obj:`folder`; returns the
    environment's interpreter."""
    src = folder / 'src'
    src.mkdir(parents=True)
    for name in SOURCES:  # a copy, so that the build leaves no files here
        path = osp.join(ROOT, name)
        if osp.isdir(path):
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns(
                '__pycache__', '*.pyc'))
        else:
            shutil.copy(path, src / name)
    # No build isolation: the test environment has setuptools, and an
    # isolated build would fetch it.
    _pip('wheel', '--no-deps', '--no-build-isolation', '--no-cache-dir',
         '-w', str(folder / 'wheel'), str(src))
    wheel, = (folder / 'wheel').glob('*.whl')
    venv = folder / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)],
                   check=True, timeout=120)
    python = str(venv / 'bin' / 'python')
    site = subprocess.run(
        [python, '-c', 'import sysconfig; '
         'print(sysconfig.get_paths()["purelib"])'], check=True,
        capture_output=True, text=True, timeout=120).stdout.strip()
    paths = dict.fromkeys(sysconfig.get_paths()[k] for k in ('purelib',
                                                              'platlib'))
    with open(osp.join(site, '_test_environment.pth'), 'w') as f:
        f.write(''.join(f'{path}\n' for path in paths))
    _pip('install', '--no-deps', '--no-index', '--target', site, str(wheel))
    return python


def installed_python(base: Path) -> str:
    r"""The interpreter of the environment with the installed wheel, built
    once below :obj:`base` (the session's temporary folder shared by all
    workers)."""
    folder = base / 'installed'
    done = base / 'installed.done'
    with FileLock(str(base / 'installed.lock')):
        if not done.exists():
            if folder.exists():  # an interrupted build
                shutil.rmtree(folder)
            done.write_text(build(folder))
    return done.read_text()


def env(**extra: str) -> dict:
    r"""The environment of a process a user starts: none of the test
    session's additions to the module path."""
    out = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP')}
    out.update(extra)
    return out
