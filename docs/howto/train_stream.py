r"""One set streamed from several processes: every rank holds a shard of the
set's rows on disk (``shard{rank}.npy``), streams it through the model, and
the ranks combine their per-set states, so that each gets the output and the
gradient of the whole set.

Start it with ``torchrun`` (``torchrun --nproc_per_node=2 train_stream.py``);
see the streaming guide of the documentation.
"""
import os

import numpy as np
import torch
import torch.distributed as dist

from torch_geometric_deepsets import Chunks, DeepSetsInvariant, stream_encode

dist.init_process_group('nccl' if torch.cuda.is_available() else 'gloo')
rank, world = dist.get_rank(), dist.get_world_size()
device = torch.device('cuda', int(os.environ['LOCAL_RANK'])) \
    if torch.cuda.is_available() else torch.device('cpu')
torch.manual_seed(0)  # the same weights on every process
model = DeepSetsInvariant([3, 128, 128], [128, 1], aggr='mean').to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

shard = np.load(f'shard{rank}.npy', mmap_mode='r')   # this rank's rows
chunks = Chunks(shard, chunk_size=500_000)            # moved to `device`
for step in range(100):
    optimizer.zero_grad()
    out = stream_encode(model, chunks, distributed=True)
    loss = (out - 1.0).pow(2).sum()
    loss.backward()     # second pass + all_reduce of phi's gradients
    optimizer.step()

if rank == 0:
    print(f'{world} process(es), step {step + 1}, loss {loss.item():.4f}')
dist.destroy_process_group()
