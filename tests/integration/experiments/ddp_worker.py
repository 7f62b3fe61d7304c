r"""Run by :mod:`test_distributed` as ``python ddp_worker.py ARGS``: the
digit-sum example's :obj:`main` with ``--strategy ddp --devices 2``, after
which every process saves the parameters it ended with. Lightning starts the
second process by running this same command again, with ``LOCAL_RANK=1``."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', '..', '..', 'examples'))
import digit_sum_text  # noqa: E402

if __name__ == '__main__':
    outcome = digit_sum_text.main(sys.argv[1:])
    rank = os.environ.get('LOCAL_RANK', '0')
    torch.save(outcome.models['model'].state_dict(),
               os.path.join(os.environ['DDP_TEST_DIR'], f'rank{rank}.pt'))
