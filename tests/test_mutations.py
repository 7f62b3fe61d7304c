r"""The tests catch the bugs they are meant to catch: each case below breaks a
copy of the package in one small way that once went unnoticed, runs the
tests that cover the behaviour on that copy, and requires them to fail.

A case whose code pattern no longer exists fails too, so that a refactoring
has to carry the breakage over instead of silently dropping it.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PKG = 'torch_geometric_deepsets'

#: name: (file, pattern, replacement, tests to run (pytest args)).
MUTATIONS = {
    # Chunked long sums that ignore the set boundaries inside a batch.
    'chunks_cross_sets': (
        '_kernels.py',
        'bounds = torch.sort(torch.cat([ptr, grid])).values',
        'bounds = torch.sort(torch.cat([ptr[:1], grid, ptr[-1:]])).values',
        ['tests/test_kernels.py', '-k', 'long_sums']),
    # Deciding to chunk from the first set's size only.
    'chunk_decision_first_set': (
        '_kernels.py',
        'int(counts.max()) > LONG_SET',
        'int(counts[0]) > LONG_SET',
        ['tests/test_kernels.py', '-k', 'next_to_a_small_one']),
    # FiLM dropped for a one-layer phi: the model ignores its context.
    'film_dropped_for_one_layer': (
        'models/conditional.py',
        'x = self.fusion_module(x, context, index)',
        'x = x if (self.fusion == "film" and self.phi_first is None) '
        'else self.fusion_module(x, context, index)',
        ['tests/models/test_conditional.py', '-k', 'one_layer']),
    # Another empty-set value for the aggregations beyond sum/mean/max.
    'empty_sets_zeroed': (
        'pool.py',
        '    return aggr(x, index, ptr=ptr, dim_size=dim_size, dim=dim, '
        '**kwargs)\n',
        '    out = aggr(x, index, ptr=ptr, dim_size=dim_size, dim=dim, '
        '**kwargs)\n'
        '    return out * (torch.bincount(index, minlength=dim_size) > 0)'
        '.view(-1, 1)\n',
        ['tests/test_pool.py', '-k', 'empty_set']),
    # No sorting for the aggregations that pad sets densely.
    'no_sort_for_padding_aggregations': (
        'pool.py',
        'if ptr is None and _needs_sorted_rows(aggr):',
        'if False:',
        ['tests/test_pool.py', '-k', 'shuffled']),
    # Value checks that read GPU tensors outside debug mode, or never.
    'value_checks_ignore_debug_mode': (
        'pool.py',
        'return host_path(tensor) or (torch_geometric.is_debug_enabled()',
        'return host_path(tensor) or (False',
        ['tests/test_pool.py', '-k', 'value_checks']),
    # Pooling moved in front of a last linear layer that dropout follows.
    'fusion_through_trailing_dropout': (
        'models/_utils.py',
        '        lin = phi[-1]\n',
        '        lin = phi[-2] if isinstance(phi[-1], torch.nn.Dropout) '
        'else phi[-1]\n',
        ['tests/models/test_invariant.py', '-k', 'dropout_after']),
    # The max gradient given whole to every tied row.
    'max_ties_not_split': (
        '_kernels.py',
        'share = grad / ties.clamp_(min=1)',
        'share = grad + 0 * ties',
        ['tests/test_kernels.py', '-k', 'ties and device']),
}


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('mutant')
    shutil.copytree(osp.join(ROOT, 'tests'), root / 'tests',
                    ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copy(osp.join(ROOT, 'pyproject.toml'), root / 'pyproject.toml')
    return root


@pytest.mark.parametrize('name', list(MUTATIONS))
def test_mutation_is_caught(name, workspace):
    path, pattern, replacement, tests = MUTATIONS[name]
    package = workspace / PKG
    if package.exists():
        shutil.rmtree(package)
    shutil.copytree(osp.join(ROOT, PKG), package,
                    ignore=shutil.ignore_patterns('__pycache__'))
    source = (package / path).read_text()
    assert source.count(pattern) == 1, f'{name}: pattern not found once'
    (package / path).write_text(source.replace(pattern, replacement))

    env = dict(os.environ, PYTHONPATH=str(workspace), OMP_NUM_THREADS='1')
    check = subprocess.run(
        [sys.executable, '-c', f'import {PKG}; print({PKG}.__file__)'],
        cwd=workspace, env=env, capture_output=True, text=True, check=True)
    assert check.stdout.startswith(str(workspace)), check.stdout
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-x', '-p', 'no:cacheprovider',
         *tests], cwd=workspace, env=env, capture_output=True, text=True,
        timeout=600)
    # pytest exits with 1 when tests fail; 5 would mean none was collected.
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
