r"""Data-parallel training through Lightning: ``--strategy ddp --devices 2``
on the CPU (gloo), two real processes."""
import os

import pytest
import torch

from tests.example_scripts import load, run

#: Trainings, subprocesses, builds or compiles, every test here.
pytestmark = pytest.mark.slow

pytest.importorskip('lightning')
if not torch.distributed.is_available() or \
        not torch.distributed.is_gloo_available():
    pytest.skip('torch.distributed with gloo is not available',
                allow_module_level=True)

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      'ddp_worker.py')


def args(tmp_path, out, batch_size, steps=8):
    return [
        '--max-steps', str(steps), '--batch-size', str(batch_size),
        '--num-train', '640', '--test-sizes', '5', '--test-per-size', '20',
        '--out', str(tmp_path / out), '--data-root', str(tmp_path / 'data'),
        '--accelerator', 'cpu', '--no-progress', '--no-plot',
        '--log-every', '2', '--threads', '1'
    ]


def test_ddp_two_cpu_processes_equal_one_with_the_combined_batch(tmp_path):
    done = run(WORKER, [*args(tmp_path, 'ddp', 16), '--devices', '2',
                        '--strategy', 'ddp'], DDP_TEST_DIR=str(tmp_path))
    assert done.returncode == 0, done.stdout[-6000:]

    # Both ranks end with bitwise the same parameters...
    rank0 = torch.load(tmp_path / 'rank0.pt', weights_only=True)
    rank1 = torch.load(tmp_path / 'rank1.pt', weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

    # ...which are, up to rounding, those of one process taking both
    # ranks' shards as one batch: the sampler split every batch in two and
    # DDP averaged the gradients.
    text = load('digit_sum_text')
    single = text.main(args(tmp_path, 'single', 32)).models['model']
    early = text.main(args(tmp_path, 'early', 32, steps=1)).models['model']
    single, early = single.state_dict(), early.state_dict()
    moved = 0.0
    for key in rank0:
        assert torch.allclose(rank0[key], single[key], atol=1e-5), key
        moved = max(moved, float((rank0[key] - early[key]).abs().max()))
    assert moved > 1e-3  # the last seven steps really trained

    # Rank 0 alone wrote the results; the checkpoint records both processes'
    # steps once.
    assert os.path.isfile(tmp_path / 'ddp' / 'results.json')
    state = torch.load(tmp_path / 'ddp' / 'checkpoints' / 'last.ckpt',
                       weights_only=False)
    assert state['global_step'] == 8
    assert 'Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2' in \
        done.stdout
