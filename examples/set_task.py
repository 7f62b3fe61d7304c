r"""What the example scripts share: one :class:`SetTask` (a
:class:`~lightning.pytorch.LightningModule` for regression and
classification on PyG batches of sets), the data side
(:class:`SetDataModule`, a :class:`~torch_geometric.data.LightningDataset`
with a fast, resumable loader for generated sets) and the command-line
options that become a :class:`~lightning.pytorch.Trainer`.

The loop, checkpoints, resuming, loggers, precision, gradient clipping and
data-parallel training are Lightning's; this file only says what is special
about sets. An experiment script reads top to bottom like this::

    import argparse
    import set_task                       # this file, beside the script

    parser = argparse.ArgumentParser(description='My set experiment')
    set_task.add_arguments(parser, name='mine', max_steps=2000,
                           batch_size=64, lr=1e-3)
    parser.add_argument('--hidden', type=set_task.positive_int, default=64)
    args = parser.parse_args()

    set_task.seed_everything(args)        # seed and torch threads
    with set_task.one_process_at_a_time(args.data_root):
        train = MyDataset(args.data_root, 'train')   # generated once
        test = MyDataset(args.data_root, 'test')
    data = set_task.SetDataModule(train, test, batch_size=args.batch_size,
                                  seed=args.seed)
    task = set_task.SetTask(model, loss='l1', lr=args.lr,
                            schedule='one_cycle')
    trainer = set_task.build_trainer(args, parser)
    set_task.fit(trainer, task, data, args)
    if trainer.is_global_zero:            # rank 0 reports
        pred = set_task.predict(task, test)

``model`` is any module called as ``model(batch.x, batch.batch,
dim_size=batch.num_graphs)`` that returns one row per set (the package's
models do). A task whose model takes other inputs, or whose output is one
score per element, subclasses :class:`SetTask` and overrides
:meth:`~SetTask.forward`, :meth:`~SetTask.loss` and
:meth:`~SetTask.metrics` (``set_anomaly.py`` and ``gnn_readout.py`` do).

What every script gets from :func:`add_arguments` and :func:`build_trainer`:
``--max-steps``/``--max-epochs``, ``--precision`` (e.g. ``bf16-mixed``),
``--accelerator``, ``--devices``, ``--strategy`` (``ddp``),
``--num-nodes``, ``--gradient-clip-val``, ``--accumulate-grad-batches``,
``--seed``, ``--deterministic``, ``--ckpt-path last`` (resume, also to
extend a finished run with a larger ``--max-steps``), ``--early-stopping``,
a progress bar plus one log line per epoch, a CSV log (and TensorBoard when
installed) and ``last.ckpt`` under ``--out``, and Ctrl-C that saves a
checkpoint at the next step and prints how to resume.
"""
import argparse
import contextlib
import math
import os
import os.path as osp
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from filelock import FileLock
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    ModelCheckpoint,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler

from torch_geometric.data import Batch, Data, Dataset, InMemoryDataset
from torch_geometric.data.lightning import LightningDataset
from torch_geometric.loader.dataloader import Collater

__all__ = [
    'SetTask',
    'SetDataModule',
    'SetLoader',
    'EpochLog',
    'Interrupt',
    'Outcome',
    'add_arguments',
    'seed_everything',
    'one_process_at_a_time',
    'build_trainer',
    'data_module',
    'fit',
    'predict',
]

LOSSES: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    'l1': F.l1_loss,
    'mse': F.mse_loss,
    'cross_entropy': F.cross_entropy,
}
SCHEDULES = (None, 'one_cycle', 'multistep')


# The task ####################################################################


class SetTask(L.LightningModule):
    r"""Trains :obj:`model` on PyG batches of sets: regression (one value per
    set) or classification (logits per set).

    The loss is logged as :obj:`train_loss` (per step),
    :obj:`train_loss_epoch` (its mean over the sets of an epoch) and
    :obj:`val_loss` / :obj:`test_loss`; :meth:`metrics` adds
    :obj:`val_mae` and :obj:`val_mse` (regression, in the target's own
    units) or :obj:`val_acc` (classification). Regression targets may be
    standardised with :obj:`target_mean` and :obj:`target_std`: the model
    then learns :math:`(y - \mu) / \sigma`, and :meth:`predict_step`,
    :func:`predict` and the metrics undo it.

    The learning rate follows :obj:`schedule`, stepped every optimisation
    step over the run's :obj:`estimated_stepping_batches`:
    :obj:`"one_cycle"` warms up over the first :obj:`warmup` fraction from
    :math:`lr / 25` to :obj:`lr` and anneals to :math:`lr / 250000` along a
    cosine (the factors of :class:`~torch.optim.lr_scheduler.OneCycleLR`'s
    defaults, without its momentum cycling); :obj:`"multistep"` multiplies by
    :obj:`gamma` at the :obj:`milestones` fractions of the run. A resumed run
    with a larger :obj:`max_steps` stretches the one-cycle schedule over the
    new length (:class:`OneCycleLR` would refuse to step past its end);
    the multi-step milestones keep their steps.

    The global :obj:`torch` random state goes into every checkpoint and comes
    back on resume, so dropout and noise continue as if never stopped; so
    does the running sum behind :obj:`train_loss_epoch`, so that an epoch
    interrupted and resumed averages all its steps (Lightning's own
    per-epoch aggregation starts again from the resume).

    Args:
        model (torch.nn.Module): Called as :obj:`model(batch.x, batch.batch,
            dim_size=batch.num_graphs)`; see :meth:`forward`.
        task (str, optional): :obj:`"regression"` or
            :obj:`"classification"`. (default: :obj:`"regression"`)
        loss (str, optional): :obj:`"l1"`, :obj:`"mse"` or
            :obj:`"cross_entropy"`. (default: :obj:`"mse"` for regression,
            :obj:`"cross_entropy"` for classification)
        optimizer (str, optional): A :mod:`torch.optim` class, by its name in
            lower case (:obj:`"adam"`, :obj:`"adamw"`, :obj:`"sgd"`, ...).
            (default: :obj:`"adam"`)
        lr (float, optional): (Peak) learning rate. (default: :obj:`1e-3`)
        weight_decay (float, optional): Weight decay. (default: :obj:`0.0`)
        schedule (str, optional): :obj:`None`, :obj:`"one_cycle"` or
            :obj:`"multistep"`. (default: :obj:`None`)
        warmup (float, optional): Warm-up fraction of :obj:`"one_cycle"`.
            (default: :obj:`0.1`)
        milestones (Sequence[float], optional): Fractions of the run at which
            :obj:`"multistep"` multiplies the learning rate by :obj:`gamma`.
            (default: :obj:`(0.4, 0.8)`)
        gamma (float, optional): Factor of :obj:`"multistep"`.
            (default: :obj:`0.1`)
        target_mean (float, optional): :math:`\mu` of the regression target.
            (default: :obj:`0.0`)
        target_std (float, optional): :math:`\sigma` of the regression
            target. (default: :obj:`1.0`)
    """
    def __init__(
        self,
        model: nn.Module,
        task: str = 'regression',
        loss: Optional[str] = None,
        optimizer: str = 'adam',
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        schedule: Optional[str] = None,
        warmup: float = 0.1,
        milestones: Sequence[float] = (0.4, 0.8),
        gamma: float = 0.1,
        target_mean: float = 0.0,
        target_std: float = 1.0,
    ) -> None:
        super().__init__()
        if task not in ('regression', 'classification'):
            raise ValueError(f"'task' must be 'regression' or "
                             f"'classification' (got {task!r})")
        if loss is None:
            loss = 'mse' if task == 'regression' else 'cross_entropy'
        if loss not in LOSSES:
            raise ValueError(f"'loss' must be one of {sorted(LOSSES)} "
                             f"(got {loss!r})")
        if optimizer not in _optimizers():
            raise ValueError(f"'optimizer' must name a torch.optim class in "
                             f"lower case, e.g. 'adam' (got {optimizer!r})")
        if schedule not in SCHEDULES:
            raise ValueError(f"'schedule' must be one of {SCHEDULES} "
                             f"(got {schedule!r})")
        if not lr > 0:
            raise ValueError(f"'lr' must be positive (got {lr})")
        if not target_std > 0:
            raise ValueError(f"'target_std' must be positive "
                             f"(got {target_std})")
        # The model is saved with the weights; load_from_checkpoint takes it
        # again as an argument.
        self.save_hyperparameters(ignore=['model'])
        self.model = model
        # The epoch, and the sum of loss * sets and the number of sets of it
        # so far; a tensor sum, so that adding to it never syncs a GPU.
        self._loss_epoch: Optional[int] = None
        self._loss_sum = torch.zeros((), dtype=torch.float64)
        self._loss_count = 0

    # What a subclass overrides ###############################################

    def forward(self, batch: Batch) -> Tensor:
        r"""The model's output on :obj:`batch`: :obj:`[num_sets]` for
        regression (in standardised units), :obj:`[num_sets, classes]` for
        classification."""
        out = self.model(batch.x, batch.batch, dim_size=batch.num_graphs)
        if self.hparams.task == 'regression' and out.dim() > 1 and \
                out.size(-1) == 1:
            out = out.squeeze(-1)
        return out

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        r"""The loss of :meth:`forward`'s output against :obj:`batch.y`."""
        target = batch.y
        if self.hparams.task == 'regression':
            target = (target - self.hparams.target_mean) / \
                self.hparams.target_std
        return LOSSES[self.hparams.loss](out, target)

    def metrics(self, out: Tensor, batch: Batch) -> Dict[str, Tensor]:
        r"""Evaluation metrics of a batch, averaged over its sets."""
        if self.hparams.task == 'classification':
            return {'acc': (out.argmax(-1) == batch.y).float().mean()}
        error = self.unscale(out) - batch.y
        return {'mae': error.abs().mean(), 'mse': error.pow(2).mean()}

    # The rest is the same for every set task #################################

    def unscale(self, out: Tensor) -> Tensor:
        r"""Undoes the standardisation of regression outputs."""
        if self.hparams.task != 'regression':
            return out
        return out * self.hparams.target_std + self.hparams.target_mean

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        r"""The loss of a batch, logged as :obj:`train_loss`."""
        loss = self.loss(self(batch), batch)
        self.log('train_loss', loss, prog_bar=True, on_step=True,
                 on_epoch=False, batch_size=batch.num_graphs)
        self._loss_sum += loss.detach().double() * batch.num_graphs
        self._loss_count += batch.num_graphs
        return loss

    def on_train_epoch_start(self) -> None:
        r"""Starts the sum behind :obj:`train_loss_epoch`, unless the run
        resumes this epoch from a checkpoint taken in its middle."""
        if self._loss_epoch != self.current_epoch:
            self._loss_epoch, self._loss_count = self.current_epoch, 0
            self._loss_sum = torch.zeros((), dtype=torch.float64)
        self._loss_sum = self._loss_sum.to(self.device)

    def train_loss_epoch(self) -> Optional[float]:
        r"""The mean training loss over the sets of the current epoch so
        far (:obj:`None` before its first step)."""
        if not self._loss_count:
            return None
        return float(self._loss_sum) / self._loss_count

    def on_train_epoch_end(self) -> None:
        r"""Logs :obj:`train_loss_epoch`."""
        mean = self.train_loss_epoch()
        if mean is not None:
            self.log('train_loss_epoch', mean, prog_bar=True)

    def _evaluate(self, batch: Batch, stage: str) -> None:
        out = self(batch)
        values = {'loss': self.loss(out, batch), **self.metrics(out, batch)}
        # sync_dist: under DDP every process sees a shard of the sets.
        self.log_dict({f'{stage}_{k}': v
                       for k, v in values.items()}, prog_bar=stage == 'val',
                      batch_size=batch.num_graphs, sync_dist=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        r"""Logs :obj:`val_loss` and the :meth:`metrics`."""
        self._evaluate(batch, 'val')

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        r"""Logs :obj:`test_loss` and the :meth:`metrics`."""
        self._evaluate(batch, 'test')

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        r""":meth:`forward` in the target's own units."""
        return self.unscale(self(batch))

    def configure_optimizers(self) -> Dict[str, Any]:
        r"""The optimizer and the per-step schedule (see above)."""
        hp = self.hparams
        optimizer = _optimizers()[hp.optimizer](
            self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.schedule is None:
            return {'optimizer': optimizer}
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError(f"schedule={hp.schedule!r} needs a finite run: "
                             f"set 'max_steps' or 'max_epochs'")
        total = max(int(total), 1)
        if hp.schedule == 'one_cycle':
            # A plain function is not saved with the scheduler's state, so a
            # resumed run evaluates it with its own total.
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: one_cycle(step, total, hp.warmup))
        else:
            scheduler = torch.optim.lr_scheduler.MultiStepLR(
                optimizer,
                sorted({max(1, round(f * total))
                        for f in hp.milestones}), gamma=hp.gamma)
        return {'optimizer': optimizer,
                'lr_scheduler': {'scheduler': scheduler, 'interval': 'step'}}

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        r"""Adds the global random state and the sum behind
        :obj:`train_loss_epoch` to :obj:`checkpoint`."""
        checkpoint['torch_rng_state'] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint['cuda_rng_state'] = torch.cuda.get_rng_state_all()
        checkpoint['train_loss_sum'] = {'epoch': self._loss_epoch,
                                        'sum': self._loss_sum.cpu(),
                                        'count': self._loss_count}

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        r"""Restores what :meth:`on_save_checkpoint` added."""
        if 'torch_rng_state' in checkpoint:
            torch.set_rng_state(checkpoint['torch_rng_state'])
        if 'cuda_rng_state' in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint['cuda_rng_state'])
        if 'train_loss_sum' in checkpoint:
            state = checkpoint['train_loss_sum']
            self._loss_epoch, self._loss_sum, self._loss_count = \
                state['epoch'], state['sum'], state['count']


def _optimizers() -> Dict[str, type]:
    return {
        name.lower(): cls
        for name, cls in vars(torch.optim).items() if isinstance(cls, type)
        and issubclass(cls, torch.optim.Optimizer) and cls is not
        torch.optim.Optimizer
    }


def one_cycle(step: int, total: int, warmup: float = 0.1) -> float:
    r"""The factor of the learning rate at :obj:`step` of :obj:`total`:
    cosine warm-up from 1/25 to 1 over the first :obj:`warmup` fraction,
    cosine annealing to 1/250000 after (:obj:`OneCycleLR`'s defaults), and
    the final value past :obj:`total`."""
    start, end = 1 / 25, 1 / 25 / 1e4
    up = max(1, round(warmup * total))
    if step < up:
        t, low, high = step / up, start, 1.0
    else:
        t = min(1.0, (step - up) / max(1, total - up))
        low, high = end, 1.0
        t = 1.0 - t  # from high down to low
    return low + (high - low) * (1 - math.cos(math.pi * t)) / 2


# The data ####################################################################


class _Gather:
    r"""Collates a list of dataset indices into a :class:`Batch`.

    For an :class:`InMemoryDataset` of edgeless sets (every attribute
    concatenated along its first dimension without increments, no transform)
    the rows are gathered from the collated storage with one
    :meth:`index_select` per attribute, which is what PyG's
    :class:`~torch_geometric.loader.DataLoader` computes after separating and
    re-collating :class:`Data` objects. Measured on the experiments (2 CPU
    cores, their default batch sizes), PyG's loader took 4-14 ms a batch,
    25-89 % of a training step, and this gather 0.5-1.6 ms. Any other
    dataset goes through PyG's :class:`Collater`.
    """
    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.fast = self.can_gather(dataset)
        if self.fast:
            self.index_map = None if dataset._indices is None else \
                torch.as_tensor(list(dataset.indices()), dtype=torch.long)
        else:
            self.collater = Collater(dataset)

    @staticmethod
    def can_gather(dataset: Dataset) -> bool:
        if not isinstance(dataset, InMemoryDataset) or \
                dataset.transform is not None or \
                not isinstance(dataset._data, Data) or \
                dataset.slices is None or len(dataset) == 0 or \
                'x' not in dataset.slices:
            return False
        sample = dataset.get(dataset.indices()[0])
        for key, value in sample.to_dict().items():
            if not isinstance(value, Tensor) or value.dim() == 0 or \
                    key not in dataset.slices:
                return False
            if sample.__cat_dim__(key, value) != 0 or \
                    sample.__inc__(key, value) != 0:
                return False
        return True

    def __call__(self, indices: List[int]) -> Batch:
        if not self.fast:
            return self.collater([self.dataset[int(i)] for i in indices])
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.index_map is not None:
            idx = self.index_map[idx]
        store, slices = self.dataset._data, self.dataset.slices
        batch = Batch(_base_cls=Data)
        slice_dict, inc_dict = {}, {}
        for key, bounds in slices.items():
            start = bounds[idx]
            count = bounds[idx + 1] - start
            cum = torch.cat([count.new_zeros(1), count.cumsum(0)])
            # Row r of the output comes from start[s] + (r - cum[s]) for the
            # set s that owns it.
            rows = torch.repeat_interleave(start - cum[:-1], count) + \
                torch.arange(int(cum[-1]))
            batch[key] = store[key].index_select(0, rows)
            slice_dict[key] = cum
            inc_dict[key] = torch.zeros(idx.numel(), dtype=torch.long)
        sizes = slice_dict['x'].diff()
        batch.batch = torch.repeat_interleave(torch.arange(idx.numel()),
                                              sizes)
        batch.ptr = slice_dict['x']
        batch._slice_dict = slice_dict
        batch._inc_dict = inc_dict
        batch._num_graphs = idx.numel()
        return batch


class _Sampler(DistributedSampler):
    r"""This process's share of one permutation per :obj:`(seed, epoch)`
    (:class:`DistributedSampler`'s order), optionally without its first
    :obj:`skip` indices: the rest of an epoch after a resume."""
    skip = 0

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        return iter(list(super().__iter__())[skip:])

    def __len__(self) -> int:
        return self.num_samples


class SetLoader(DataLoader):
    r"""Mini-batches of sets for Lightning: the order depends only on
    :obj:`seed` and the epoch (Lightning calls :meth:`set_epoch` through the
    sampler), every process takes its shard of it, and the loader remembers
    how many batches of the current epoch it handed out. That is its
    :meth:`state_dict`, which Lightning stores in every checkpoint and gives
    back on resume, so a run stopped in the middle of an epoch continues with
    the batch it would have drawn next. Iterating never touches the global
    random state.

    Args:
        dataset (torch_geometric.data.Dataset): The sets.
        batch_size (int): Sets per batch and process.
        shuffle (bool, optional): Shuffle every epoch. (default: :obj:`False`)
        seed (int, optional): Seed of the shuffling. (default: :obj:`0`)
        drop_last (bool, optional): Drop the last, smaller batch.
            (default: :obj:`False`)
        num_replicas (int, optional): Data-parallel processes.
            (default: :obj:`1`)
        rank (int, optional): This process's rank. (default: :obj:`0`)
        num_workers (int, optional): Collating worker processes.
            (default: :obj:`0`)
    """
    def __init__(self, dataset: Dataset, batch_size: int,
                 shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, num_replicas: int = 1,
                 rank: int = 0, num_workers: int = 0) -> None:
        if len(dataset) == 0:
            raise ValueError("'dataset' is empty")
        sampler = _Sampler(range(len(dataset)), num_replicas=num_replicas,
                           rank=rank, shuffle=shuffle, seed=seed)
        # Its own generator: worker seeds are not drawn from the global one.
        super().__init__(range(len(dataset)), batch_size=batch_size,
                         sampler=sampler, drop_last=drop_last,
                         collate_fn=_Gather(dataset),
                         num_workers=num_workers,
                         generator=torch.Generator().manual_seed(seed),
                         persistent_workers=num_workers > 0)
        self.sets = dataset
        self._handed_out = 0
        self._resume: Optional[Dict[str, int]] = None

    def __iter__(self) -> Iterator[Batch]:
        # Lightning sets the epoch before iterating; a checkpoint taken at
        # the end of an epoch resumes with the next one, from its start.
        resumed = self._resume
        self._resume = None
        skip = 0
        if resumed is not None and resumed['epoch'] == self.sampler.epoch:
            skip = resumed['batches']
        self.sampler.skip = skip * self.batch_size
        self._handed_out = skip
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch

    def state_dict(self) -> Dict[str, int]:
        r"""The epoch and the number of its batches handed out so far."""
        return {'epoch': self.sampler.epoch, 'batches': self._handed_out}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        r"""The next iteration over epoch :obj:`state["epoch"]` skips its
        first :obj:`state["batches"]` batches."""
        self._resume = dict(state)


class SetDataModule(LightningDataset):
    r"""PyG's :class:`~torch_geometric.data.LightningDataset` with
    :class:`SetLoader` for every split: shuffled, resumable training batches
    and, under DDP, every process its shard of each split (the processes and
    ranks come from the trainer, so Lightning need not replace the
    sampler: build the trainer with :obj:`use_distributed_sampler=False`, as
    :func:`build_trainer` does).

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
    :obj:`root`: the first process to get there generates and saves the
    datasets, the others then load them (under :obj:`torchrun` every rank
    starts at once). Needs a file system that all of them share or, per
    node, a local one."""
    os.makedirs(osp.dirname(osp.abspath(root)) or '.', exist_ok=True)
    with FileLock(osp.abspath(root) + '.lock'):
        yield


@torch.no_grad()
def predict(task: SetTask, dataset: Dataset,
            batch_size: int = 1024) -> tuple:
    r"""Runs :obj:`task` over :obj:`dataset` in order, in eval mode on the
    task's device. Returns the concatenated :meth:`SetTask.predict_step`
    outputs (on the CPU) and the batches."""
    was_training = task.training
    task.eval()
    outputs, batches = [], []
    for i, batch in enumerate(SetLoader(dataset, batch_size)):
        outputs.append(task.predict_step(batch.to(task.device), i).cpu())
        batches.append(batch)
    task.train(was_training)
    return torch.cat(outputs), batches


# Callbacks ###################################################################


def _print(trainer: L.Trainer, line: str) -> None:
    bar = trainer.progress_bar_callback
    if bar is not None and not bar.is_disabled:
        bar.print(line)  # above the bar, which stays where it is
    else:
        print(line, flush=True)


class EpochLog(Callback):
    r"""One line per epoch with the logged metrics, and one per validation
    in the middle of an epoch; it keeps them in :attr:`history`, which is
    saved in every checkpoint, so a resumed run has the whole history."""
    def __init__(self) -> None:
        self.history: List[Dict[str, float]] = []
        self._pending: Optional[Dict[str, float]] = None

    def _flush(self, trainer: L.Trainer) -> None:
        entry, self._pending = self._pending, None
        if entry is None:
            return
        self.history.append(entry)
        if trainer.is_global_zero:
            shown = ', '.join(f'{k} {v:.4g}' for k, v in entry.items()
                              if k not in ('epoch', 'step'))
            _print(trainer, f"epoch {entry['epoch']} step {entry['step']}: "
                   f'{shown}')

    def _metrics(self, trainer: L.Trainer, prefix: str) -> Dict[str, float]:
        return {k: float(v) for k, v in trainer.callback_metrics.items()
                if k.startswith(prefix) and not k.endswith('_step')
                and k != 'train_loss'}

    def on_validation_end(self, trainer: L.Trainer,
                          pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._pending = {'epoch': trainer.current_epoch,
                         'step': trainer.global_step,
                         **self._metrics(trainer, 'val_')}

    def on_train_batch_start(self, trainer: L.Trainer,
                             pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._flush(trainer)  # a validation in the middle of the epoch

    def on_train_epoch_end(self, trainer: L.Trainer,
                           pl_module: L.LightningModule) -> None:
        train = self._metrics(trainer, 'train_')
        if isinstance(pl_module, SetTask):
            # Lightning calls the task's on_train_epoch_end, which logs this,
            # after this hook: the logged value is still the last epoch's.
            train.pop('train_loss_epoch', None)
            mean = pl_module.train_loss_epoch()
            if mean is not None:
                train['train_loss_epoch'] = mean
        entry = {'epoch': trainer.current_epoch,
                 'step': trainer.global_step, **train}
        if self._pending is not None and \
                self._pending['step'] == trainer.global_step:
            entry.update(self._pending)
        else:
            self._flush(trainer)
        self._pending = entry
        self._flush(trainer)

    def on_fit_end(self, trainer: L.Trainer,
                   pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    def state_dict(self) -> Dict[str, Any]:
        return {'history': self.history}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.history = list(state['history'])


class Interrupt(Callback):
    r"""Ctrl-C (SIGINT) during :meth:`~lightning.pytorch.Trainer.fit` stops
    training after the current step, saves :obj:`last.ckpt` and prints one
    line saying how to resume; a second Ctrl-C interrupts at once.

    The signal only sets a flag: stopping inside an optimizer step would
    save half-updated parameters. Under DDP the processes agree to stop at
    the same step (checked every :obj:`sync_every` steps, so the agreement
    costs one small all-reduce per :obj:`sync_every` steps).

    Args:
        resume_hint (str): The command that resumes, for the message.
        sync_every (int, optional): Steps between DDP agreements.
            (default: :obj:`16`)
    """
    def __init__(self, resume_hint: str, sync_every: int = 16) -> None:
        self.resume_hint = resume_hint
        self.sync_every = sync_every
        self.requested = False
        self.saved: Optional[str] = None
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def on_fit_start(self, trainer: L.Trainer,
                     pl_module: L.LightningModule) -> None:
        self.requested, self.saved = False, None
        if threading.current_thread() is threading.main_thread():
            # None: a handler not set from Python; Ctrl-C then raises.
            self._previous = signal.signal(signal.SIGINT, self._handler) \
                or signal.default_int_handler

    def _restore(self) -> None:
        if self._previous is not None and \
                threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None

    def on_fit_end(self, trainer: L.Trainer,
                   pl_module: L.LightningModule) -> None:
        self._restore()

    def on_train_batch_end(self, trainer: L.Trainer,
                           pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        stop = self.requested
        if trainer.world_size > 1:
            if trainer.global_step % self.sync_every:
                return
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        callback = trainer.checkpoint_callback
        directory = callback.dirpath if callback is not None and \
            callback.dirpath else trainer.default_root_dir
        self.saved = osp.join(directory, 'last.ckpt')
        trainer.save_checkpoint(self.saved, weights_only=False)
        raise KeyboardInterrupt

    def on_exception(self, trainer: L.Trainer,
                     pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, KeyboardInterrupt) and self.saved and \
                trainer.is_global_zero:
            print(f'Stopped at step {trainer.global_step}; saved '
                  f'{self.saved}. Resume with: {self.resume_hint}',
                  flush=True)


# Command line and trainer ####################################################


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1 (got {value})')
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f'must be positive (got {value})')
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f'must be non-negative (got {value})')
    return value


def _devices(text: str) -> Any:
    if text == 'auto':
        return text
    if ',' in text:
        return [int(i) for i in text.split(',') if i]
    return int(text)


def add_arguments(parser: argparse.ArgumentParser, name: str,
                  max_steps: int = -1, max_epochs: Optional[int] = None,
                  batch_size: int = 64, lr: float = 1e-3,
                  threads: Optional[int] = None) -> None:
    r"""The options of every example, with the script's own defaults."""
    group = parser.add_argument_group('training (Lightning)')
    group.add_argument('--max-steps', type=int, default=max_steps,
                       help='optimisation steps; -1: bounded by --max-epochs'
                       f' (default: {max_steps})')
    group.add_argument('--max-epochs', type=int, default=max_epochs,
                       help=f'epochs (default: {max_epochs})')
    group.add_argument('--batch-size', type=positive_int, default=batch_size,
                       help=f'sets per step and process (default: '
                       f'{batch_size})')
    group.add_argument('--lr', type=positive_float, default=lr,
                       help=f'(peak) learning rate (default: {lr})')
    group.add_argument('--seed', type=int, default=0,
                       help='seed of the initialisation and data order '
                       '(default: 0)')
    group.add_argument('--deterministic', action='store_true',
                       help='deterministic algorithms only')
    group.add_argument('--out', default=osp.join('runs', name),
                       help=f'checkpoints, logs, results and plots go here '
                       f'(default: runs/{name})')
    group.add_argument('--ckpt-path', default=None,
                       help="resume: 'last' (the newest checkpoint in "
                       "--out/checkpoints) or a path; a larger --max-steps "
                       "or --max-epochs extends a finished run")
    group.add_argument('--checkpoint-every', type=positive_int, default=None,
                       help='also checkpoint every this many steps '
                       '(default: after every validation or epoch)')
    group.add_argument('--early-stopping', type=positive_int, default=None,
                       metavar='PATIENCE',
                       help='stop when the validation metric has not '
                       'improved for this many validations')
    group.add_argument('--precision', default='32-true',
                       help="32-true, bf16-mixed, 16-mixed, 64-true, ... "
                       "(default: 32-true)")
    group.add_argument('--gradient-clip-val', type=positive_float,
                       default=None, help='clip the gradient norm to this')
    group.add_argument('--accumulate-grad-batches', type=positive_int,
                       default=1, help='batches per optimisation step '
                       '(default: 1)')
    group.add_argument('--accelerator', default='auto',
                       help='cpu, cuda, gpu, mps, auto (default: auto)')
    group.add_argument('--devices', type=_devices, default='auto',
                       help='number of devices, a list like 0,1, or auto '
                       '(default: auto)')
    group.add_argument('--strategy', default='auto',
                       help='auto, ddp, ddp_spawn, ... (default: auto)')
    group.add_argument('--num-nodes', type=positive_int, default=1,
                       help='machines (default: 1)')
    group.add_argument('--num-workers', type=int, default=0,
                       help='batch-collating worker processes (default: 0)')
    group.add_argument('--threads', type=positive_int, default=threads,
                       help='CPU threads of torch per process (default: '
                       f'{threads or "torch default"})')
    group.add_argument('--log-every', type=positive_int, default=50,
                       help='steps between logged losses (default: 50)')
    group.add_argument('--data-root', default='data',
                       help='generated datasets go here (default: data)')
    group.add_argument('--no-progress', action='store_true',
                       help='no progress bar (the per-epoch lines stay)')
    group.add_argument('--no-plot', action='store_true',
                       help='skip the matplotlib plot')


def seed_everything(args: argparse.Namespace) -> None:
    r"""Sets torch's thread count and seeds every generator (Lightning's
    :func:`~lightning.pytorch.seed_everything`, which also seeds workers);
    call it before building the model."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    L.seed_everything(args.seed, workers=True, verbose=False)


def _resume_hint() -> str:
    argv = list(sys.argv)
    if '--ckpt-path' in argv:
        i = argv.index('--ckpt-path')
        del argv[i:i + 2]
    argv = [a for a in argv if not a.startswith('--ckpt-path=')]
    script = osp.relpath(argv[0]) if argv and argv[0] else 'script.py'
    return ' '.join([f'python {script}', *argv[1:], '--ckpt-path', 'last'])


def build_trainer(args: argparse.Namespace, parser: argparse.ArgumentParser,
                  monitor: Optional[str] = None, mode: str = 'min',
                  val_every: Optional[int] = None,
                  out: Optional[str] = None) -> L.Trainer:
    r"""A :class:`~lightning.pytorch.Trainer` from :func:`add_arguments`'s
    options, with :class:`~lightning.pytorch.callbacks.ModelCheckpoint`
    (:obj:`last.ckpt` and the best by :obj:`monitor` in
    :obj:`out/checkpoints`), :class:`EpochLog`, :class:`Interrupt`, and
    CSV logs in :obj:`out/csv` (TensorBoard in :obj:`out/tensorboard` when
    installed). Options Lightning rejects (an absent accelerator, more
    devices than there are) become an argparse error.

    Args:
        args (argparse.Namespace): The parsed options.
        parser (argparse.ArgumentParser): For the error message.
        monitor (str, optional): Validation metric that picks the best
            checkpoint and drives :obj:`--early-stopping`.
            (default: :obj:`None`)
        mode (str, optional): :obj:`"min"` or :obj:`"max"` for
            :obj:`monitor`. (default: :obj:`"min"`)
        val_every (int, optional): Validate every this many steps instead of
            every epoch. (default: :obj:`None`)
        out (str, optional): Output directory. (default: :obj:`args.out`)
    """
    out = args.out if out is None else out
    if args.early_stopping is not None and monitor is None:
        parser.error('--early-stopping: this script monitors no metric')
    checkpoint = ModelCheckpoint(
        dirpath=osp.join(out, 'checkpoints'), save_last=True,
        monitor=monitor, mode=mode, save_top_k=1,
        every_n_train_steps=args.checkpoint_every,
        filename='{epoch}-{step}', enable_version_counter=False)
    callbacks: List[Callback] = [checkpoint, EpochLog(),
                                 Interrupt(_resume_hint())]
    if args.early_stopping is not None:
        callbacks.append(EarlyStopping(monitor, patience=args.early_stopping,
                                       mode=mode))
    loggers: List[Any] = [CSVLogger(out, name='csv')]
    with contextlib.suppress(ModuleNotFoundError):
        loggers.append(TensorBoardLogger(out, name='tensorboard'))
    if args.max_steps == -1 and args.max_epochs is None:
        parser.error('set --max-steps or --max-epochs')
    try:
        return L.Trainer(
            accelerator=args.accelerator, devices=args.devices,
            strategy=args.strategy, num_nodes=args.num_nodes,
            precision=args.precision, max_steps=args.max_steps,
            max_epochs=args.max_epochs,
            gradient_clip_val=args.gradient_clip_val,
            accumulate_grad_batches=args.accumulate_grad_batches,
            deterministic=args.deterministic or None,
            val_check_interval=val_every,
            check_val_every_n_epoch=None if val_every else 1,
            log_every_n_steps=args.log_every, default_root_dir=out,
            enable_progress_bar=not args.no_progress,
            enable_model_summary=False, num_sanity_val_steps=0,
            use_distributed_sampler=False, callbacks=callbacks,
            logger=loggers)
    except (MisconfigurationException, ValueError) as e:
        parser.error(str(e))


@dataclass
class Outcome:
    r"""What an example's :obj:`main` returns: its results (rank 0; as
    written to :obj:`results.json`) and the trained models by name."""
    results: Dict[str, Any]
    models: Dict[str, nn.Module] = field(default_factory=dict)


def data_module(args: argparse.Namespace, parser: argparse.ArgumentParser,
                train: Dataset, val: Optional[Dataset] = None,
                test: Optional[Dataset] = None) -> SetDataModule:
    r"""A :class:`SetDataModule` with :obj:`args.batch_size`,
    :obj:`args.seed` and :obj:`args.num_workers`; a batch size larger than
    the training set is an argparse error."""
    try:
        return SetDataModule(train, val, test, batch_size=args.batch_size,
                             seed=args.seed, num_workers=args.num_workers)
    except ValueError as e:
        parser.error(f'--batch-size: {e}')


def fit(trainer: L.Trainer, task: SetTask, data: SetDataModule,
        args: argparse.Namespace) -> None:
    r""":meth:`trainer.fit <lightning.pytorch.Trainer.fit>`, resuming from
    :obj:`args.ckpt_path`, then :obj:`last.ckpt` of the finished run (a run
    that stops at :obj:`max_steps` in the middle of an epoch saves nothing
    by itself there), from which a larger :obj:`--max-steps` continues."""
    trainer.fit(task, datamodule=data, ckpt_path=args.ckpt_path)
    if trainer.interrupted:
        return
    callback = trainer.checkpoint_callback
    directory = callback.dirpath if callback is not None and \
        callback.dirpath else trainer.default_root_dir
    trainer.save_checkpoint(osp.join(directory, 'last.ckpt'),
                            weights_only=False)


def history(trainer: L.Trainer) -> List[Dict[str, float]]:
    r"""The :class:`EpochLog` history of :obj:`trainer`'s run."""
    for callback in trainer.callbacks:
        if isinstance(callback, EpochLog):
            return callback.history
    return []
