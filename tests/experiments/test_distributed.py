import json
import os

import torch

from tests.torchrun import run_torchrun
from torch_geometric_deepsets.experiments import main

WORKER = os.path.join(os.path.dirname(__file__), 'ddp_worker.py')


def args(tmp_path, out, batch_size):
    return [
        'digit_sum_text', '--steps', '8', '--batch-size',
        str(batch_size), '--num-train', '640', '--test-sizes', '5',
        '--test-per-size', '20', '--out',
        str(tmp_path / out), '--data-root',
        str(tmp_path / 'data'), '--device', 'cpu', '--no-progress',
        '--no-plot', '--log-every', '2'
    ]


def test_torchrun_two_cpu_processes(tmp_path):
    env = dict(os.environ, DDP_TEST_DIR=str(tmp_path))
    code, output = run_torchrun([WORKER, *args(tmp_path, 'ddp', 16)],
                                env=env)
    assert code == 0, output[-6000:]

    # Both ranks end with bitwise the same parameters...
    rank0 = torch.load(tmp_path / 'rank0.pt', weights_only=True)
    rank1 = torch.load(tmp_path / 'rank1.pt', weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

    # ...which are, up to rounding, those of one process taking both
    # ranks' shards as one batch: the sampler split every batch in two and
    # DDP averaged the gradients.
    single = main(args(tmp_path, 'single', 32)).models['model'].state_dict()
    one_step = args(tmp_path, 'one_step', 32)
    one_step[one_step.index('--steps') + 1] = '1'
    early = main(one_step).models['model'].state_dict()
    moved = 0.0
    for key in rank0:
        assert torch.allclose(rank0[key], single[key], atol=1e-5), key
        moved = max(moved, float((rank0[key] - early[key]).abs().max()))
    assert moved > 1e-3  # the last seven steps really trained

    # Rank 0 alone wrote the files, recording the two processes.
    with open(tmp_path / 'ddp' / 'metrics.json') as f:
        metrics = json.load(f)
    assert metrics['config']['world_size'] == 2
    assert metrics['step'] == 8
    assert sorted(os.listdir(tmp_path / 'ddp')) == [
        'checkpoint.pt', 'metrics.json', 'results.json'
    ]
