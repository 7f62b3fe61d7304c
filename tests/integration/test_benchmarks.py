r"""The benchmark suite runs (tiny sizes) and reports every section; speed
targets live in the recorded full runs, never in timed unit tests."""
import importlib.util
import math
from pathlib import Path

import pytest

from tests.example_scripts import ROOT as REPO

ROOT = Path(REPO)


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location(
        'bench', ROOT / 'benchmarks' / 'bench.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_run_reports_every_section(bench, tmp_path, capsys):
    # The compiled contenders through a backend that compiles in seconds.
    rows = bench.main(['--quick', '--no-memory', '--compile-backend',
                       'aot_eager', '--json', str(tmp_path / 'out.json')])
    steps = [r for r in rows if r['section'] == 'step']
    assert {(r['pool'], r['sizes'], r['impl']) for r in steps} == {
        (p, s, i) for p in ('sum', 'mean', 'max')
        for s in ('constant', 'uniform', 'heavy')
        for i in ('ours', 'ours ptr', 'pyg', 'padded')} | {
        (p, 'constant', i) for p in ('sum', 'mean', 'max')
        for i in ('ours compiled', 'pyg compiled')}
    assert all(r['ms'] > 0 and math.isfinite(r['ratio_to_gemm'])
               for r in steps)
    assert {r['pool'] for r in rows if r['section'] == 'pool'} == {
        'sum', 'mean', 'max'}
    assert len([r for r in rows if r['section'] == 'equivariant']) == 6
    assert (tmp_path / 'out.json').stat().st_size > 0
    assert 'Training step' in capsys.readouterr().out


def test_scales_are_checked(bench):
    with pytest.raises(SystemExit):
        bench.main(['--quick', '--scales', 'huge'])


@pytest.mark.parametrize('impl', ['ours ptr', 'pyg', 'padded'])
def test_every_contender_computes_what_ours_computes(bench, impl):
    import torch
    scale = bench.SCALES['gnn']
    x, batch, y, sizes = bench.make_data('uniform', 6, 5, 'cpu',
                                         scale=scale)
    expected = bench.build('ours', 'mean', x, batch, 6, 'cpu', scale)
    model, inputs = bench.build(impl, 'mean', x, batch, 6, 'cpu', scale)
    assert torch.allclose(model(*inputs), expected[0](*expected[1]),
                          atol=1e-5)


def test_heavy_tailed_sizes_and_implementations_agree(bench):
    import torch
    x, batch, y, sizes = bench.make_data('heavy', 16, 8, 'cpu')
    assert sizes.max() >= 5 * sizes.float().mean()
    outs = []
    for impl in ('ours', 'pyg', 'padded'):
        model, inputs = bench.build(impl, 'max', x, batch, 16, 'cpu')
        outs.append(model(*inputs))
    # Same seed, same weights: the three implementations compute the same.
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert torch.allclose(outs[0], outs[2], atol=1e-5)


@pytest.mark.slow
def test_peak_memory_measurement(bench):
    small = bench.peak_memory('padded', 'sum', 'heavy', 16, 50, 'cpu')
    large = bench.peak_memory('padded', 'sum', 'heavy', 64, 400, 'cpu')
    assert 0 < small < large


@pytest.mark.slow
def test_tuned_allocator_run_says_so():
    # In a subprocess: the allocator setting is process-wide.
    import subprocess
    import sys
    out = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'bench.py'), '--quick',
         '--no-memory', '--sections', 'pool', '--allocator', 'tuned'],
        check=True, capture_output=True, text=True, timeout=300).stdout
    import platform
    glibc = sys.platform == 'linux' and platform.libc_ver()[0] == 'glibc'
    expected = ('tune_cpu_allocator()' if glibc else
                'tune_cpu_allocator() not applicable: C library defaults')
    assert f'# CPU allocator: {expected}' in out.splitlines()
    assert 'max   ours (ptr)' in out
