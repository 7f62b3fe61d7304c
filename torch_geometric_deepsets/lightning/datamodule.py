r"""PyG's :class:`~torch_geometric.data.LightningDataset` for datasets of
sets, and the lock that lets one process generate them."""
import contextlib
import os
import os.path as osp
from typing import Iterator, Optional

from filelock import FileLock

from torch_geometric.data import Dataset
from torch_geometric.data.lightning import LightningDataset
from torch_geometric_deepsets.lightning.loader import SetLoader


class SetDataModule(LightningDataset):
    r"""PyG's :class:`~torch_geometric.data.LightningDataset` with
    :class:`SetLoader` for every split: shuffled, resumable training batches
    and, under DDP, every process its shard of each split. The processes and
    ranks come from the trainer, so Lightning need not replace the sampler:
    build the trainer with :obj:`use_distributed_sampler=False`.

    .. code-block:: python

        data = SetDataModule(train, val, batch_size=64)
        trainer = L.Trainer(max_steps=1000, use_distributed_sampler=False)
        trainer.fit(SetTask(model), datamodule=data)

    Args:
        train_dataset (torch_geometric.data.Dataset): Training sets.
        val_dataset (torch_geometric.data.Dataset, optional): Validation
            sets. (default: :obj:`None`)
        test_dataset (torch_geometric.data.Dataset, optional): Test sets.
            (default: :obj:`None`)
        batch_size (int, optional): Training sets per batch and process.
            (default: :obj:`64`)
        eval_batch_size (int, optional): Sets per evaluation batch.
            (default: :obj:`1024`)
        seed (int, optional): Seed of the training order.
            (default: :obj:`0`)
        drop_last (bool, optional): Drop the last, smaller training batch of
            an epoch. (default: :obj:`True`)
        num_workers (int, optional): Collating worker processes.
            (default: :obj:`0`)
    """
    def __init__(self, train_dataset: Dataset,
                 val_dataset: Optional[Dataset] = None,
                 test_dataset: Optional[Dataset] = None,
                 batch_size: int = 64, eval_batch_size: int = 1024,
                 seed: int = 0, drop_last: bool = True,
                 num_workers: int = 0) -> None:
        super().__init__(train_dataset, val_dataset, test_dataset,
                         batch_size=batch_size, num_workers=num_workers,
                         pin_memory=False)
        per_process = len(train_dataset)
        if drop_last and batch_size > per_process:
            raise ValueError(f"'batch_size' ({batch_size}) is larger than "
                             f"the training set ({per_process} sets)")
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.drop_last = drop_last

    def _loader(self, dataset: Dataset, train: bool) -> SetLoader:
        trainer = self.trainer
        replicas = 1 if trainer is None else trainer.world_size
        rank = 0 if trainer is None else trainer.global_rank
        if train and self.drop_last and \
                len(dataset) // replicas < self.kwargs['batch_size']:
            raise ValueError(f"{replicas} processes leave each "
                             f"{len(dataset) // replicas} training sets, "
                             f"fewer than one batch of "
                             f"{self.kwargs['batch_size']}")
        return SetLoader(
            dataset, self.kwargs['batch_size'] if train else
            self.eval_batch_size, shuffle=train, seed=self.seed,
            drop_last=train and self.drop_last, num_replicas=replicas,
            rank=rank, num_workers=self.kwargs['num_workers'])

    def train_dataloader(self) -> SetLoader:
        r"""Shuffled, resumable batches of this process's training sets."""
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> SetLoader:
        r"""This process's validation sets, in order."""
        return self._loader(self.val_dataset, train=False)

    def test_dataloader(self) -> SetLoader:
        r"""This process's test sets, in order."""
        return self._loader(self.test_dataset, train=False)


@contextlib.contextmanager
def one_process_at_a_time(root: str) -> Iterator[None]:
    r"""Serialises the body across processes with a lock file next to
    :obj:`root` (:obj:`root + ".lock"`): the first process to get there
    generates and saves the datasets, the others then load them (under
    :obj:`torchrun` every rank starts at once). Needs a file system that all
    of them share or, per node, a local one.

    .. code-block:: python

        with one_process_at_a_time('data/digit_sum'):
            train = DigitSumText('data/digit_sum', 'train')

    Args:
        root (str): The datasets' root folder.
    """
    os.makedirs(osp.dirname(osp.abspath(root)) or '.', exist_ok=True)
    with FileLock(osp.abspath(root) + '.lock'):
        yield
