r"""Streaming across processes: two CPU processes (gloo, under torchrun)
holding parts of every set give the output and the gradients of one process
holding all rows."""
import os
import os.path as osp

import pytest
import torch

from tests.example_scripts import ROOT
from tests.integration.experiments.stream_worker import AGGRS, NUM_SETS, build
from tests.torchrun import run_torchrun

#: Trainings, subprocesses, builds or compiles, every test here.
pytestmark = pytest.mark.slow

if not torch.distributed.is_available() or \
        not torch.distributed.is_gloo_available():
    pytest.skip('torch.distributed with gloo is not available',
                allow_module_level=True)

WORKER = osp.join(osp.dirname(osp.abspath(__file__)), 'stream_worker.py')


def test_two_processes_equal_one_holding_every_row(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(
            os.pathsep) if p]))
    code, output = run_torchrun([WORKER, str(tmp_path)], env=env, cwd=ROOT)
    assert code == 0, output[-6000:]
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=False)
             for r in range(2)]
    assert len(ranks[0]) == 3 * len(AGGRS)
    for (layout, name), (out0, grads0) in ranks[0].items():
        out1, grads1 = ranks[1][layout, name]
        model, x, batch, target = build(name)
        expected = model(x, batch, dim_size=NUM_SETS)
        ((expected - target)**2).sum().backward()
        # Both processes hold the output and the gradient of all rows.
        for out in (out0, out1):
            torch.testing.assert_close(out, expected.detach(), rtol=1e-10,
                                       atol=1e-12)
        for key, param in model.named_parameters():
            assert param.grad.abs().sum() > 0, (layout, name, key)
            for grads in (grads0, grads1):
                torch.testing.assert_close(grads[key], param.grad,
                                           rtol=1e-10, atol=1e-12,
                                           msg=f'{layout} {name} {key}')
