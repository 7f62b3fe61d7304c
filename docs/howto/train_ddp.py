r"""Data-parallel training of a Deep Sets model on the digit-sum task.

Runs as a single process (``python train_ddp.py``) or with several under
``torchrun --nproc_per_node=N train_ddp.py``; the code is the same.
"""
import torch.nn.functional as F
from torch import nn

from torch_geometric_deepsets import DeepSetsInvariant
from torch_geometric_deepsets.datasets import DigitSumText
from torch_geometric_deepsets.training import (
    Trainer,
    close_distributed,
    init_distributed,
    main_process_first,
    seed_everything,
)


def loss_fn(model, batch):
    pred = model(batch.x, batch.batch, dim_size=batch.num_graphs)
    return F.l1_loss(pred.view(-1), batch.y)


def main():
    ctx = init_distributed()  # reads RANK, WORLD_SIZE, ... set by torchrun
    # Rank 0 generates the files first; the other processes then load them.
    with main_process_first(ctx):
        train = DigitSumText('data/digit_sum', 'train', num_sets=4096,
                             sizes=range(1, 11))

    seed_everything(0)  # the same initial weights on every process
    phi = nn.Sequential(nn.Embedding(10, 64), nn.Flatten(1),
                        nn.Linear(64, 30), nn.Tanh())
    model = DeepSetsInvariant(phi=phi, rho=nn.Linear(30, 1))

    trainer = Trainer(model, loss_fn, train, steps=100, batch_size=64,
                      lr=1e-2, out_dir='runs/ddp', dist=ctx, progress=False)
    summary = trainer.fit()
    if ctx.is_main:
        print(f'{ctx.world_size} process(es), step {summary["step"]}, '
              f'loss {summary["loss"]:.3f}')
    trainer.close()  # release the DDP wrapper while every process is alive
    close_distributed(ctx)


if __name__ == '__main__':
    main()
