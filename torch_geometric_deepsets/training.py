r"""Shared training plumbing for the experiments and examples.

Everything a training script needs besides its model and data:

* :func:`seed_everything` and reproducible, resumable mini-batching of sets
  (:class:`SetLoader`);
* :class:`Trainer`, a step-based fit loop with a :obj:`tqdm` progress bar,
  periodic evaluation, gradient clipping, learning-rate schedules, JSON
  metrics and checkpoints that resume bit for bit;
* :func:`save_checkpoint` / :func:`load_checkpoint` (atomic write, loaded
  with :obj:`weights_only=True`) and :func:`write_json`;
* data-parallel training under :obj:`torchrun` (:func:`init_distributed`,
  :class:`DistributedContext`, :func:`main_process_first`): PyTorch DDP over
  :obj:`gloo` on the CPU and :obj:`nccl` on GPUs, a distributed sampler, and
  only rank 0 writing files.

A minimal script::

    ctx = init_distributed()             # single process unless torchrun
    seed_everything(0)
    model = DeepSetsInvariant(phi=[3, 64, 64], rho=[64, 1])

    def loss_fn(model, batch):
        return F.l1_loss(model(batch.x, batch.batch).view(-1), batch.y)

    trainer = Trainer(model, loss_fn, dataset, steps=1000, batch_size=64,
                      out_dir='runs/mine', dist=ctx)
    trainer.fit()                        # resumes from runs/mine if present
    trainer.close()                      # drops the DDP wrapper, then
    close_distributed(ctx)               # leaves the process group

The same script runs unchanged as
:obj:`torchrun --nproc_per_node=4 script.py`.
"""
import contextlib
import datetime
import json
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Union,
)

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import Tensor
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from torch_geometric import seed_everything
from torch_geometric.data import Batch, Data, Dataset, InMemoryDataset
from torch_geometric.loader.dataloader import Collater

__all__ = [
    'seed_everything',
    'DistributedContext',
    'init_distributed',
    'close_distributed',
    'main_process_first',
    'save_checkpoint',
    'load_checkpoint',
    'write_json',
    'SetLoader',
    'Trainer',
]

CHECKPOINT_NAME = 'checkpoint.pt'
METRICS_NAME = 'metrics.json'
_CHECKPOINT_FORMAT = 1


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{name}' must be an int "
                        f"(got {type(value).__name__})")
    if value < minimum:
        raise ValueError(f"'{name}' must be at least {minimum} (got {value})")
    return value


def _check_positive_float(name: str, value: Any,
                          allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"'{name}' must be a number "
                        f"(got {type(value).__name__})")
    if not math.isfinite(value) or value < 0 or (value == 0
                                                 and not allow_zero):
        bound = 'non-negative' if allow_zero else 'positive'
        raise ValueError(f"'{name}' must be finite and {bound} "
                         f"(got {value})")
    return float(value)


# Distributed setup ###########################################################


@dataclass(frozen=True)
class DistributedContext:
    r"""Where this process stands in a (possibly one-process) data-parallel
    run. Built by :func:`init_distributed`; the default is a single process
    on the CPU.

    Args:
        rank (int, optional): Global rank of this process. (default: :obj:`0`)
        world_size (int, optional): Number of processes. (default: :obj:`1`)
        local_rank (int, optional): Rank of this process on its node.
            (default: :obj:`0`)
        device (torch.device, optional): The device this process trains on.
            (default: :obj:`cpu`)
    """
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device('cpu'))

    @property
    def is_distributed(self) -> bool:
        r"""Whether several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        r"""Whether this is rank 0, the only process that writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        r"""Waits for all processes (a no-op in a single process)."""
        if self.is_distributed:
            torch_dist.barrier()

    def all_reduce_mean(self, value: float) -> float:
        r"""The mean of :obj:`value` over all processes."""
        if not self.is_distributed:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64,
                         device=self._comm_device)
        torch_dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def all_gather_object(self, obj: Any) -> List[Any]:
        r"""A list of every process's :obj:`obj`, indexed by rank."""
        if not self.is_distributed:
            return [obj]
        out: List[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        r"""Rank :obj:`src`'s :obj:`obj`, on every process."""
        if not self.is_distributed:
            return obj
        box = [obj if self.rank == src else None]
        torch_dist.broadcast_object_list(box, src=src)
        return box[0]

    @property
    def _comm_device(self) -> torch.device:
        # NCCL only reduces CUDA tensors; gloo only CPU ones.
        return self.device if self.device.type == 'cuda' else \
            torch.device('cpu')


def init_distributed(
    backend: Optional[str] = None,
    device: Union[str, torch.device, None] = None,
    timeout: datetime.timedelta = datetime.timedelta(minutes=10),
) -> DistributedContext:
    r"""Joins the data-parallel run that :obj:`torchrun` (or any launcher that
    sets :obj:`RANK`, :obj:`WORLD_SIZE`, :obj:`LOCAL_RANK`,
    :obj:`MASTER_ADDR` and :obj:`MASTER_PORT`) started, or returns a
    single-process context when those variables are absent.

    Several nodes: start the same command on every node, e.g.

    .. code-block:: bash

        torchrun --nnodes=2 --nproc_per_node=8 --node_rank=$NODE_RANK \
            --master_addr=$HOST_OF_NODE_0 --master_port=29500 \
            -m torch_geometric_deepsets.experiments digit_sum_text

    Args:
        backend (str, optional): :obj:`"gloo"` or :obj:`"nccl"`; by default
            :obj:`"nccl"` when training on CUDA, else :obj:`"gloo"`.
            (default: :obj:`None`)
        device (str or torch.device, optional): The device to train on; by
            default :obj:`cuda:LOCAL_RANK` when CUDA is available, else the
            CPU. (default: :obj:`None`)
        timeout (datetime.timedelta, optional): How long collective
            operations wait for a missing process before failing.
            (default: 10 minutes)
    """
    if backend is not None and backend not in ('gloo', 'nccl'):
        raise ValueError(f"'backend' must be 'gloo' or 'nccl' "
                         f"(got {backend!r})")
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"Inconsistent launcher environment: RANK={rank}, "
                         f"WORLD_SIZE={world_size}")

    if device is None:
        device = torch.device(f'cuda:{local_rank}') \
            if torch.cuda.is_available() else torch.device('cpu')
    device = torch.device(device)
    if device.type == 'cuda' and device.index is None:
        # A bare 'cuda' means this process's GPU (set_device needs an index).
        device = torch.device('cuda', local_rank)
    if device.type == 'cuda':
        torch.cuda.set_device(device)

    if world_size > 1 and not torch_dist.is_initialized():
        if backend is None:
            backend = 'nccl' if device.type == 'cuda' else 'gloo'
        if backend == 'nccl' and device.type != 'cuda':
            raise ValueError("'backend' nccl needs a CUDA 'device' "
                             f"(got {device})")
        torch_dist.init_process_group(backend=backend, timeout=timeout,
                                      rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size,
                              local_rank=local_rank, device=device)


def close_distributed(ctx: Optional[DistributedContext] = None) -> None:
    r"""Leaves the process group :func:`init_distributed` joined (a no-op in
    a single process): waits for every process, then destroys the group.
    Call :meth:`Trainer.close` first."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


@contextlib.contextmanager
def main_process_first(ctx: DistributedContext) -> Iterator[None]:
    r"""Runs the body on rank 0 first, then on the first process of every
    other node, then on all remaining processes.

    Meant for dataset creation: rank 0 generates and saves the files, and the
    others find them processed (on a shared file system) or generate their
    node's copy once (on node-local disks), with no two processes ever
    writing the same file.
    """
    phase = 0 if ctx.rank == 0 else (1 if ctx.local_rank == 0 else 2)
    for _ in range(phase):
        ctx.barrier()
    try:
        yield
    finally:
        # Also on failure, so the other processes do not hang until timeout.
        for _ in range(phase, 2):
            ctx.barrier()


# Files #######################################################################


def _atomic_write(path: str, write: Callable[[Any], None],
                  mode: str = 'wb') -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory,
                               prefix=f'.{os.path.basename(path)}.',
                               suffix='.tmp')
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # Atomic on POSIX and Windows: readers see the old or the new file.
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def save_checkpoint(obj: Any, path: str) -> None:
    r"""Saves :obj:`obj` with :func:`torch.save` atomically: it is written to
    a temporary file in the same directory, flushed to disk and renamed over
    :obj:`path`, so an interrupted save leaves the previous checkpoint (or
    none) but never a truncated one.

    Args:
        obj (Any): Tensors, state dicts and plain Python containers (what
            :obj:`torch.load(weights_only=True)` accepts).
        path (str): The checkpoint file.
    """
    _atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str,
                    map_location: Union[str, torch.device, None] = 'cpu',
                    ) -> Any:
    r"""Loads a checkpoint written by :func:`save_checkpoint` with
    :obj:`weights_only=True`, i.e. without unpickling arbitrary code."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint at '{path}'")
    return torch.load(path, map_location=map_location, weights_only=True)


def write_json(obj: Any, path: str) -> None:
    r"""Writes :obj:`obj` as indented JSON, atomically (see
    :func:`save_checkpoint`)."""
    text = json.dumps(obj, indent=2, sort_keys=False) + '\n'
    _atomic_write(path, lambda f: f.write(text), mode='w')


# Random number generators ####################################################


def _rng_state() -> Dict[str, Any]:
    # Plain containers and tensors only, so that weights_only loading works.
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: Dict[str, Any] = {
        'torch': torch.get_rng_state(),
        'numpy': [name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                  int(has_gauss), float(gauss)],
        'python': [py_version, list(py_state), py_gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state['torch'])
    name, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos,
                         has_gauss, gauss))
    py_version, py_state, py_gauss = state['python']
    random.setstate((py_version, tuple(py_state), py_gauss))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


# Batching ####################################################################


class _SetCollater:
    r"""Turns a list of dataset indices into a :class:`Batch`.

    For an :class:`InMemoryDataset` of edgeless sets (every attribute a
    tensor concatenated along its first dimension without increments, no
    transform) the rows are gathered straight from the collated storage: one
    :meth:`index_select` per attribute. Measured on sets of 1-10 elements,
    that is ~50x faster than separating and re-collating
    :class:`~torch_geometric.data.Data` objects (0.2 ms against 9 ms a batch
    of 128), which dominated the training time of the small models here.
    Anything else goes through PyG's :class:`Collater`.
    """
    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.fast = self._can_gather(dataset)
        if self.fast:
            indices = dataset._indices
            self.index_map = None if indices is None else torch.as_tensor(
                list(dataset.indices()), dtype=torch.long)
        else:
            self.collater = Collater(dataset)

    @staticmethod
    def _can_gather(dataset: Dataset) -> bool:
        if not isinstance(dataset, InMemoryDataset) or \
                dataset.transform is not None or \
                not isinstance(dataset._data, Data) or \
                dataset.slices is None or len(dataset) == 0:
            return False
        sample = dataset.get(dataset.indices()[0])
        if 'x' not in dataset.slices:
            return False
        for key, value in sample.to_dict().items():
            if not isinstance(value, Tensor) or value.dim() == 0 or \
                    key not in dataset.slices:
                return False
            if sample.__cat_dim__(key, value) != 0 or \
                    sample.__inc__(key, value) != 0:
                return False
        return True

    def __call__(self, indices: Sequence[int]) -> Batch:
        if not self.fast:
            return self.collater([self.dataset[int(i)] for i in indices])
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.index_map is not None:
            idx = self.index_map[idx]
        store, slices = self.dataset._data, self.dataset.slices
        batch = Batch(_base_cls=Data)
        slice_dict, inc_dict = {}, {}
        num_nodes = None
        for key, bounds in slices.items():
            start = bounds[idx]
            count = bounds[idx + 1] - start
            cum = torch.cat([count.new_zeros(1), count.cumsum(0)])
            # Row r of the output comes from start[s] + (r - cum[s]) for the
            # set s that owns it.
            owner_start = torch.repeat_interleave(start - cum[:-1], count)
            rows = owner_start + torch.arange(int(cum[-1]))
            batch[key] = store[key].index_select(0, rows)
            slice_dict[key] = cum
            inc_dict[key] = torch.zeros(idx.numel(), dtype=torch.long)
            if key == 'x':
                num_nodes = count
        assert num_nodes is not None
        batch.batch = torch.repeat_interleave(
            torch.arange(idx.numel()), num_nodes)
        batch.ptr = slice_dict['x']
        batch._slice_dict = slice_dict
        batch._inc_dict = inc_dict
        batch._num_graphs = idx.numel()
        return batch


class SetLoader:
    r"""Mini-batches of sets in an order fixed by :obj:`(seed, epoch)`,
    sharded across data-parallel processes, and able to start in the middle
    of an epoch (which is what makes resumed training bitwise equal to
    uninterrupted training).

    The order of an epoch is that of a
    :class:`~torch.utils.data.distributed.DistributedSampler` seeded with
    :obj:`seed` after :obj:`set_epoch(epoch)`: rank :math:`r` of :math:`W`
    gets every :math:`W`-th set of one shared permutation. Iterating never
    touches the global random number generators.

    Args:
        dataset (torch_geometric.data.Dataset): The sets.
        batch_size (int): Sets per mini-batch and process.
        shuffle (bool, optional): Shuffle every epoch. (default: :obj:`True`)
        seed (int, optional): Seed of the shuffling. (default: :obj:`0`)
        drop_last (bool, optional): Drop the last, smaller batch of an epoch.
            (default: :obj:`False`)
        num_replicas (int, optional): Number of data-parallel processes.
            (default: :obj:`1`)
        rank (int, optional): This process's rank. (default: :obj:`0`)
        num_workers (int, optional): Worker processes that collate batches
            (:class:`torch.utils.data.DataLoader`); :obj:`0` collates in the
            main process. (default: :obj:`0`)
    """
    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        num_workers: int = 0,
    ) -> None:
        _check_int('batch_size', batch_size, 1)
        _check_int('num_replicas', num_replicas, 1)
        _check_int('num_workers', num_workers, 0)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"'rank' must lie in [0, {num_replicas - 1}] "
                             f"(got {rank})")
        if len(dataset) == 0:
            raise ValueError("'dataset' is empty")
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.seed = seed
        self.num_workers = num_workers
        self.sampler = DistributedSampler(dataset, num_replicas=num_replicas,
                                          rank=rank, shuffle=shuffle,
                                          seed=seed, drop_last=False)
        self.collate = _SetCollater(dataset)
        self.epoch = 0
        self.start = 0

    def __len__(self) -> int:
        r"""Number of mini-batches per epoch on this process."""
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else \
            math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        r"""Selects the order of epoch :obj:`epoch` and skips its first
        :obj:`start` mini-batches."""
        _check_int('epoch', epoch, 0)
        _check_int('start', start, 0)
        self.epoch, self.start = epoch, start

    def batch_indices(self) -> List[List[int]]:
        r"""The dataset indices of every remaining mini-batch of the
        epoch."""
        self.sampler.set_epoch(self.epoch)
        order = list(self.sampler)
        chunks = [
            order[i:i + self.batch_size]
            for i in range(0, len(order), self.batch_size)
        ][:len(self)]
        return chunks[self.start:]

    def __iter__(self) -> Iterator[Batch]:
        chunks = self.batch_indices()
        if self.num_workers == 0:
            for chunk in chunks:
                yield self.collate(chunk)
            return
        # Worker seeds come from this generator, not the global one.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 +
                                                  self.epoch)
        loader = torch.utils.data.DataLoader(
            chunks, batch_size=None, shuffle=False,
            num_workers=self.num_workers, collate_fn=self.collate,
            generator=generator)
        yield from loader


# The fit loop ################################################################


class Trainer:
    r"""A step-based training loop shared by all experiments.

    Each step draws a mini-batch from a :class:`SetLoader`, computes
    :obj:`loss_fn(model, batch)`, back-propagates, optionally clips the
    gradient norm, and steps the optimizer and the learning-rate schedule.
    Every :obj:`log_every` steps the mean loss (over steps and processes) is
    recorded; every :obj:`eval_every` steps and at the end,
    :obj:`evaluate(model)` runs on rank 0 in eval mode without gradients.
    With an :obj:`out_dir`, rank 0 writes :obj:`metrics.json` (the recorded
    losses and evaluations) and, every :obj:`checkpoint_every` steps and at
    the end, an atomic :obj:`checkpoint.pt` holding the model, optimizer,
    schedule and the random number generator states of every process, from
    which a later :meth:`fit` resumes: training :math:`k` steps, stopping and
    resuming for :math:`m` more gives bitwise the parameters of :math:`k + m`
    uninterrupted steps.

    Under :obj:`torchrun` (a :obj:`dist` context with several processes) the
    model is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`, each process draws
    its own shard of every epoch, and :obj:`batch_size` is per process.

    Args:
        model (torch.nn.Module): The model; moved to :obj:`dist.device`.
        loss_fn (callable): :obj:`loss_fn(model, batch) -> Tensor`, the
            scalar loss of a mini-batch (:obj:`model` is the DDP wrapper
            when distributed, so call it rather than its submodules).
        train_dataset (torch_geometric.data.Dataset): The training sets.
        steps (int): Total number of optimisation steps.
        batch_size (int, optional): Sets per step and process.
            (default: :obj:`64`)
        lr (float, optional): Learning rate of the default Adam optimizer.
            (default: :obj:`1e-3`)
        weight_decay (float, optional): Weight decay of the default Adam
            optimizer. (default: :obj:`0.0`)
        optimizer (callable, optional): :obj:`optimizer(params) ->
            torch.optim.Optimizer`, replacing the default Adam.
            (default: :obj:`None`)
        scheduler (callable, optional): :obj:`scheduler(optimizer) ->
            LRScheduler`, stepped once per step. (default: :obj:`None`)
        clip_grad_norm (float, optional): Clip the gradient norm to this.
            (default: :obj:`None`)
        evaluate (callable, optional): :obj:`evaluate(model) -> dict` of
            JSON-serialisable metrics. (default: :obj:`None`)
        eval_every (int, optional): Evaluate every this many steps (and
            always at the end). (default: :obj:`None`, only at the end)
        log_every (int, optional): Record the loss every this many steps.
            (default: :obj:`50`)
        checkpoint_every (int, optional): Checkpoint every this many steps
            (and always at the end); needs :obj:`out_dir`.
            (default: :obj:`None`, only at the end)
        out_dir (str, optional): Where checkpoints and metrics go.
            (default: :obj:`None`, nothing is written)
        resume (bool, optional): Continue from :obj:`out_dir`'s checkpoint
            if there is one. (default: :obj:`True`)
        seed (int, optional): Seed of the data order. (default: :obj:`0`)
        config (dict, optional): JSON-serialisable settings stored in the
            checkpoint; resuming with different settings raises.
            (default: :obj:`None`)
        dist (DistributedContext, optional): From :func:`init_distributed`.
            (default: :obj:`None`, one process on the CPU)
        progress (bool, optional): Show a progress bar on rank 0.
            (default: :obj:`True`)
        drop_last (bool, optional): Drop the last, smaller batch of each
            epoch. (default: :obj:`True`)
        num_workers (int, optional): Batch-collating worker processes.
            (default: :obj:`0`)
        desc (str, optional): Label of the progress bar.
            (default: :obj:`"train"`)
        ddp_kwargs (dict, optional): Extra arguments of
            :class:`~torch.nn.parallel.DistributedDataParallel`.
            (default: :obj:`None`)
    """
    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[torch.nn.Module, Batch], Tensor],
        train_dataset: Dataset,
        *,
        steps: int,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None,
        scheduler: Optional[Callable[[torch.optim.Optimizer], Any]] = None,
        clip_grad_norm: Optional[float] = None,
        evaluate: Optional[Callable[[torch.nn.Module], Dict[str,
                                                            Any]]] = None,
        eval_every: Optional[int] = None,
        log_every: int = 50,
        checkpoint_every: Optional[int] = None,
        out_dir: Optional[str] = None,
        resume: bool = True,
        seed: int = 0,
        config: Optional[Dict[str, Any]] = None,
        dist: Optional[DistributedContext] = None,
        progress: bool = True,
        drop_last: bool = True,
        num_workers: int = 0,
        desc: str = 'train',
        ddp_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"'model' must be a torch.nn.Module "
                            f"(got {type(model).__name__})")
        if not callable(loss_fn):
            raise TypeError("'loss_fn' must be callable")
        if evaluate is not None and not callable(evaluate):
            raise TypeError("'evaluate' must be callable")
        self.steps = _check_int('steps', steps, 1)
        _check_int('batch_size', batch_size, 1)
        _check_positive_float('lr', lr)
        _check_positive_float('weight_decay', weight_decay, allow_zero=True)
        if clip_grad_norm is not None:
            _check_positive_float('clip_grad_norm', clip_grad_norm)
        self.eval_every = None if eval_every is None else \
            _check_int('eval_every', eval_every, 1)
        self.log_every = _check_int('log_every', log_every, 1)
        self.checkpoint_every = None if checkpoint_every is None else \
            _check_int('checkpoint_every', checkpoint_every, 1)
        if self.checkpoint_every is not None and out_dir is None:
            raise ValueError("'checkpoint_every' needs an 'out_dir' to write "
                             "the checkpoints to")
        if config is not None and not isinstance(config, dict):
            raise TypeError(f"'config' must be a dict "
                            f"(got {type(config).__name__})")

        self.ctx = dist if dist is not None else DistributedContext()
        self.device = self.ctx.device
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        self.evaluate = evaluate
        self.clip_grad_norm = clip_grad_norm
        self.out_dir = out_dir
        self.resume = resume
        self.progress = progress
        self.desc = desc

        self._ddp_kwargs = dict(ddp_kwargs or {})
        self.train_model: torch.nn.Module = self._wrap()

        params = [p for p in self.model.parameters() if p.requires_grad]
        if optimizer is None:
            self.optimizer = torch.optim.Adam(params, lr=lr,
                                              weight_decay=weight_decay)
        else:
            self.optimizer = optimizer(params)
        self.scheduler = scheduler(self.optimizer) if scheduler else None

        self.loader = SetLoader(train_dataset, batch_size, shuffle=True,
                                seed=seed, drop_last=drop_last,
                                num_replicas=self.ctx.world_size,
                                rank=self.ctx.rank, num_workers=num_workers)
        if len(self.loader) == 0:
            raise ValueError(f"'train_dataset' gives this process "
                             f"{len(self.loader.sampler)} sets, fewer than "
                             f"one batch of 'batch_size'={batch_size} with "
                             f"'drop_last'")

        self.config: Dict[str, Any] = {
            'steps': steps,
            'batch_size': batch_size,
            'lr': lr,
            'weight_decay': weight_decay,
            'clip_grad_norm': clip_grad_norm,
            'seed': seed,
            'drop_last': drop_last,
            'world_size': self.ctx.world_size,
            'num_train_sets': len(train_dataset),
            **(config or {}),
        }
        self.step = 0
        self.history: List[Dict[str, Any]] = []
        self.evals: List[Dict[str, Any]] = []
        self._loss_sum: Union[float, Tensor] = 0.0
        self._loss_count = 0
        self._elapsed = 0.0

    @property
    def elapsed(self) -> float:
        r"""Seconds spent training so far, over all resumed runs."""
        return self._elapsed

    @property
    def checkpoint_path(self) -> Optional[str]:
        r"""Path of the checkpoint, or :obj:`None` without :obj:`out_dir`."""
        if self.out_dir is None:
            return None
        return os.path.join(self.out_dir, CHECKPOINT_NAME)

    @property
    def metrics_path(self) -> Optional[str]:
        r"""Path of :obj:`metrics.json`, or :obj:`None` without
        :obj:`out_dir`."""
        if self.out_dir is None:
            return None
        return os.path.join(self.out_dir, METRICS_NAME)

    def _wrap(self) -> torch.nn.Module:
        r"""The model as trained: wrapped in
        :class:`~torch.nn.parallel.DistributedDataParallel` under DDP."""
        if not self.ctx.is_distributed:
            return self.model
        device_ids = [self.device] if self.device.type == 'cuda' else None
        return torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=device_ids, **self._ddp_kwargs)

    def close(self) -> None:
        r"""Drops the :class:`~torch.nn.parallel.DistributedDataParallel`
        wrapper, and with it this trainer's hold on the process group (a
        no-op in a single process). Call it on every process before
        :func:`close_distributed`. Otherwise the wrapper is freed only after
        the group is torn down, at function or interpreter exit, and that
        can hang a process: 1 run in 22 of the distributed how-to script
        did (a gloo group freed after its peer process had exited). A later
        :meth:`fit` wraps the model again."""
        self.train_model = self.model

    # Checkpoints ###########################################################

    def state_dict(self) -> Dict[str, Any]:
        r"""Everything :meth:`fit` needs to continue exactly; collective
        under DDP (every process contributes its RNG state)."""
        rng = self.ctx.all_gather_object(_rng_state())
        return {
            'format': _CHECKPOINT_FORMAT,
            'step': self.step,
            'config': self.config,
            'model': self.model.state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'scheduler': None if self.scheduler is None else
            self.scheduler.state_dict(),
            'rng': rng,
            'history': self.history,
            'evals': self.evals,
            'running_loss': [float(self._loss_sum), self._loss_count],
            'elapsed': self._elapsed,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        r"""Restores a :meth:`state_dict`, after checking that it was written
        with the same configuration."""
        if state.get('format') != _CHECKPOINT_FORMAT:
            raise ValueError(f"Unknown checkpoint format "
                             f"{state.get('format')!r}")
        saved = state['config']
        diff = sorted(k for k in set(saved) | set(self.config)
                      if saved.get(k) != self.config.get(k))
        if diff:
            details = ', '.join(f'{k}: {saved.get(k)!r} -> '
                                f'{self.config.get(k)!r}' for k in diff)
            raise ValueError(f"The checkpoint in '{self.out_dir}' was written "
                             f"with other settings ({details}); train from "
                             f"scratch (resume=False, '--fresh') or use "
                             f"another output directory")
        self.model.load_state_dict(state['model'])
        self.optimizer.load_state_dict(state['optimizer'])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state['scheduler'])
        _set_rng_state(state['rng'][self.ctx.rank])
        self.step = int(state['step'])
        self.history = list(state['history'])
        self.evals = list(state['evals'])
        self._loss_sum, self._loss_count = state['running_loss']
        self._elapsed = float(state['elapsed'])

    def save_checkpoint(self) -> None:
        r"""Writes :obj:`checkpoint.pt` and :obj:`metrics.json` (rank 0;
        every process must call it under DDP)."""
        if self.out_dir is None:
            raise ValueError("The trainer has no 'out_dir' to save to")
        state = self.state_dict()
        if self.ctx.is_main:
            save_checkpoint(state, self.checkpoint_path)
            self.write_metrics()
        self.ctx.barrier()

    def try_resume(self) -> bool:
        r"""Loads :obj:`out_dir`'s checkpoint if there is one; returns
        whether it did. Rank 0 reads the file and sends it to the others, so
        other nodes need not see the same disk."""
        if self.checkpoint_path is None:
            return False
        state = None
        if self.ctx.is_main and os.path.isfile(self.checkpoint_path):
            state = load_checkpoint(self.checkpoint_path)
        state = self.ctx.broadcast_object(state)
        if state is None:
            return False
        if len(state['rng']) != self.ctx.world_size:
            raise ValueError(f"The checkpoint in '{self.out_dir}' was written "
                             f"by {len(state['rng'])} processes; resume with "
                             f"the same number (now {self.ctx.world_size})")
        self.load_state_dict(state)
        return True

    def write_metrics(self) -> None:
        r"""Writes :obj:`metrics.json`: settings, recorded losses and
        evaluations (rank 0 only)."""
        if self.metrics_path is None or not self.ctx.is_main:
            return
        write_json(
            {
                'config': self.config,
                'step': self.step,
                'elapsed_s': round(self._elapsed, 3),
                'history': self.history,
                'evals': self.evals,
            }, self.metrics_path)

    # Training ##############################################################

    def _run_eval(self) -> None:
        if self.evaluate is None:
            return
        if self.evals and self.evals[-1]['step'] == self.step:
            return
        if self.ctx.is_main:
            was_training = self.model.training
            self.model.eval()
            with torch.no_grad():
                metrics = self.evaluate(self.model)
            self.model.train(was_training)
            if not isinstance(metrics, dict):
                raise TypeError(f"'evaluate' must return a dict "
                                f"(got {type(metrics).__name__})")
            self.evals.append({'step': self.step, **metrics})
        self.ctx.barrier()

    def _train_step(self, batch: Batch) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.train_model, batch)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise TypeError("'loss_fn' must return a scalar tensor")
        loss.backward()
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                           self.clip_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach()

    def _log(self, bar: Any) -> None:
        loss = self.ctx.all_reduce_mean(
            float(self._loss_sum) / self._loss_count)
        if not math.isfinite(loss):
            raise FloatingPointError(f"The training loss is {loss} at step "
                                     f"{self.step}; lower 'lr' or clip "
                                     f"gradients ('clip_grad_norm')")
        lr = self.optimizer.param_groups[0]['lr']
        self.history.append({'step': self.step, 'loss': loss, 'lr': lr})
        self._loss_sum, self._loss_count = 0.0, 0
        bar.set_postfix(loss=f'{loss:.4g}', refresh=False)

    def fit(self, until: Optional[int] = None) -> Dict[str, Any]:
        r"""Trains up to :obj:`steps` (or :obj:`until`, if smaller, which
        stops early as an interruption would), resuming from the checkpoint
        first when :obj:`resume` is set. Returns :obj:`{"step", "loss",
        "eval"}`: the step reached, the last recorded loss and the last
        evaluation."""
        if until is not None:
            _check_int('until', until, 0)
        stop = self.steps if until is None else min(until, self.steps)
        if self.train_model is self.model:  # after close()
            self.train_model = self._wrap()
        resumed = self.resume and self.try_resume()
        self.train_model.train()
        bar = tqdm(total=self.steps, initial=self.step, desc=self.desc,
                   disable=not (self.progress and self.ctx.is_main),
                   dynamic_ncols=True, leave=False)
        if resumed and self.ctx.is_main and self.progress:
            bar.write(f'Resumed from {self.checkpoint_path} at step '
                      f'{self.step}')
        per_epoch = len(self.loader)
        started = time.perf_counter() - self._elapsed
        try:
            while self.step < stop:
                epoch, offset = divmod(self.step, per_epoch)
                self.loader.set_epoch(epoch, offset)
                for batch in self.loader:
                    loss = self._train_step(batch.to(self.device))
                    self.step += 1
                    # Kept on the device: no host sync between log steps.
                    self._loss_sum = self._loss_sum + loss
                    self._loss_count += 1
                    self._elapsed = time.perf_counter() - started
                    bar.update(1)
                    if self.step % self.log_every == 0 or \
                            self.step == self.steps:
                        self._log(bar)
                    if self.eval_every and self.step % self.eval_every == 0:
                        self._run_eval()
                    if self.checkpoint_every and self.step < stop and \
                            self.step % self.checkpoint_every == 0:
                        self.save_checkpoint()
                    if self.step >= stop:
                        break
        finally:
            bar.close()
        if self.step >= self.steps:
            self._run_eval()
        if self.out_dir is not None:
            self.save_checkpoint()
        last_loss = self.history[-1]['loss'] if self.history else None
        return {
            'step': self.step,
            'loss': last_loss,
            'eval': self.evals[-1] if self.evals else None,
        }
