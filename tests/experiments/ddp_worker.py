r"""Started by :mod:`test_distributed` under :obj:`torchrun`: runs the
experiments' command-line entry point unchanged, then every rank saves the
parameters it ended with, so the test can compare them."""
import os
import sys

import torch

from torch_geometric_deepsets.experiments import main

if __name__ == '__main__':
    outcome = main(sys.argv[1:])
    rank = os.environ['RANK']
    torch.save(outcome.models['model'].state_dict(),
               os.path.join(os.environ['DDP_TEST_DIR'], f'rank{rank}.pt'))
