r"""Data-parallel training of a Deep Sets model on the digit-sum task with
PyTorch Lightning.

Runs as one process (``python train_ddp.py``), lets Lightning start the
processes (``python train_ddp.py --devices 4``), or joins the ones a launcher
started: ``torchrun --nproc_per_node=4 train_ddp.py``, ``srun python
train_ddp.py`` under SLURM. The code is the same.
"""
import argparse
import os

import lightning.pytorch as L
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from torch_geometric_deepsets import DeepSetsInvariant
from torch_geometric_deepsets.datasets import DigitSumText
from torch_geometric_deepsets.lightning import (
    SetDataModule,
    SetTask,
    one_process_at_a_time,
)


def main():
    parser = argparse.ArgumentParser()
    # Under torchrun: one device per process it started on this node.
    parser.add_argument('--devices', type=int,
                        default=int(os.environ.get('LOCAL_WORLD_SIZE', 1)))
    parser.add_argument('--num-nodes', type=int, default=1)
    parser.add_argument('--accelerator', default='cpu')
    args = parser.parse_args()

    # Every process builds the dataset; the lock lets the first one generate
    # and save the files, the others load them.
    with one_process_at_a_time('data/digit_sum'):
        train = DigitSumText('data/digit_sum', 'train', num_sets=4096,
                             sizes=range(1, 11))

    L.seed_everything(0, verbose=False)  # the same weights everywhere
    phi = nn.Sequential(nn.Embedding(10, 64), nn.Flatten(1),
                        nn.Linear(64, 30), nn.Tanh())
    model = DeepSetsInvariant(phi=phi, rho=nn.Linear(30, 1))
    task = SetTask(model, loss='l1', lr=1e-2)
    data = SetDataModule(train, batch_size=64)  # per process

    trainer = L.Trainer(
        accelerator=args.accelerator, devices=args.devices,
        num_nodes=args.num_nodes,
        strategy='ddp' if args.devices * args.num_nodes > 1 else 'auto',
        max_steps=100, use_distributed_sampler=False, logger=False,
        callbacks=[ModelCheckpoint(dirpath='runs/ddp', save_last=True)],
        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, datamodule=data)
    if trainer.is_global_zero:
        loss = float(trainer.callback_metrics['train_loss_epoch'])
        print(f'{trainer.world_size} process(es), step '
              f'{trainer.global_step}, loss {loss:.3f}')


if __name__ == '__main__':
    main()
