r"""The documentation builds without a warning and every snippet in it runs.

Each build runs Sphinx in a subprocess, as ``make docs`` does: the HTML
builder with warnings as errors, and the doctest builder, which executes
every ``testcode``/``doctest`` block of the pages (tutorials, how-to guides,
explanation and reference). The training script of the distributed-training
guide also runs under ``torchrun`` with two processes.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest

from tests.torchrun import run_torchrun

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DOCS = osp.join(ROOT, 'docs')

# The test extra installs Sphinx and MyST (make test installs them): a
# missing one is a broken install, not a reason to skip the docs.
import myst_parser  # noqa: E402, F401
import sphinx  # noqa: E402, F401


def _env():
    env = dict(os.environ)
    # Tiny tensors: extra threads only cost on a busy machine.
    env['OMP_NUM_THREADS'] = '1'
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                  if p])
    return env


def _run(args, cwd, timeout=300):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stdout


def _sphinx(builder, tmp_path):
    out, doctrees = tmp_path / builder, tmp_path / 'doctrees'
    code, output = _run(['-m', 'sphinx', '-W', '--keep-going', '-b', builder,
                         '-d', str(doctrees), DOCS, str(out)], cwd=ROOT)
    if code != 0:
        print(output)
    return code, output, out


def test_html_builds_without_warnings(tmp_path):
    code, output, out = _sphinx('html', tmp_path)
    assert code == 0, f'sphinx html failed (exit {code}); output above'
    for page in ('index', 'tutorials/getting_started', 'tutorials/training',
                 'howto/variable_size', 'howto/distributed',
                 'reference/models', 'explanation/theory',
                 'explanation/architecture'):
        assert (out / f'{page}.html').is_file(), page
    # Autodoc found the docstrings (an import failure would leave it empty).
    models = (out / 'reference' / 'models.html').read_text()
    assert 'The permutation-invariant Deep Sets model' in models
    assert 'A Deep Sets model conditioned on a per-set context' in models


def test_every_snippet_runs(tmp_path):
    code, output, out = _sphinx('doctest', tmp_path)
    assert code == 0, f'sphinx doctest failed (exit {code}); output above'
    summary = (out / 'output.txt').read_text()
    assert ' 0 failures in tests' in summary, summary
    assert ' 0 failures in setup code' in summary, summary
    assert ' 0 failures in cleanup code' in summary, summary


def test_distributed_guide_script_under_torchrun(tmp_path):
    torch = pytest.importorskip('torch')
    if not torch.distributed.is_available() or \
            not torch.distributed.is_gloo_available():
        pytest.skip('torch.distributed with gloo is not available')
    script = osp.join(DOCS, 'howto', 'train_ddp.py')
    code, output = run_torchrun([script], env=_env(), cwd=str(tmp_path))
    if code != 0:
        print(output)
    assert code == 0, f'torchrun failed (exit {code}); output above'
    assert '2 process(es), step 100, loss' in output
    assert (tmp_path / 'runs' / 'ddp' / 'last.ckpt').is_file()
