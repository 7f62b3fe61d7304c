r"""The command line of the example scripts and the
:class:`~lightning.pytorch.Trainer` it becomes.

The task, the data module and the callbacks are the package's
(:mod:`torch_geometric_deepsets.lightning`); this module turns the options
every script shares into a trainer. A script reads top to bottom like
this::

    import argparse

    import set_task                       # this module, beside the script
    from torch_geometric_deepsets.lightning import (
        SetTask, one_process_at_a_time, predict)

    parser = argparse.ArgumentParser(description='My set experiment')
    set_task.add_arguments(parser, name='mine', max_steps=2000,
                           batch_size=64, lr=1e-3)
    parser.add_argument('--hidden', type=set_task.positive_int, default=64)
    args = parser.parse_args()

    set_task.seed_everything(args)        # seed and torch threads
    with one_process_at_a_time(args.data_root):
        train = MyDataset(args.data_root, 'train')   # generated once
        test = MyDataset(args.data_root, 'test')
    data = set_task.data_module(args, parser, train, test)
    task = SetTask(build_model, {'hidden': args.hidden}, loss='l1',
                   lr=args.lr, schedule='one_cycle')
    trainer = set_task.build_trainer(args, parser)
    set_task.fit(trainer, task, data, args)
    if trainer.is_global_zero:            # rank 0 reports
        pred, batches = predict(task, test)

``build_model`` is a function (or class) at the top level of the script,
so that ``SetTask.load_from_checkpoint(path)`` rebuilds the trained model
(with the script's folder on :obj:`sys.path`).

What every script gets from :func:`add_arguments` and :func:`build_trainer`:
``--max-steps``/``--max-epochs``, ``--precision`` (e.g. ``bf16-mixed``),
``--accelerator``, ``--devices``, ``--strategy`` (``ddp``),
``--num-nodes``, ``--gradient-clip-val``, ``--accumulate-grad-batches``,
``--seed``, ``--deterministic``, ``--ckpt-path last`` (resume, also to
extend a finished run with a larger ``--max-steps``), ``--early-stopping``,
a progress bar on a terminal plus one log line per epoch, a CSV log (and
TensorBoard when installed) and ``last.ckpt`` under ``--out``, and Ctrl-C
that saves a checkpoint at the next step and prints how to resume.
"""
import argparse
import contextlib
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import lightning.pytorch as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    ModelCheckpoint,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn

from torch_geometric.data import Dataset
from torch_geometric_deepsets.lightning import (
    EpochLog,
    Interrupt,
    SetDataModule,
    TerminalProgressBar,
)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1 (got {value})')
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be at least 0 (got {value})')
    return value


def step_count(text: str) -> int:
    value = int(text)
    if value != -1 and value < 1:
        raise argparse.ArgumentTypeError(
            f'must be at least 1, or -1 for a run bounded by --max-epochs '
            f'(got {value})')
    return value


def seed(text: str) -> int:
    value = int(text)
    # Lightning replaces a seed outside uint32 by a random one, with a
    # warning: a run that asked for a seed would not be reproducible.
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f'must be in [0, 2**32) '
                                         f'(got {value})')
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
    group.add_argument('--max-steps', type=step_count,
                       default=max_steps,
                       help='optimisation steps; -1: bounded by --max-epochs'
                       f' (default: {max_steps})')
    group.add_argument('--max-epochs', type=positive_int, default=max_epochs,
                       help=f'epochs (default: {max_epochs})')
    group.add_argument('--batch-size', type=positive_int, default=batch_size,
                       help=f'sets per step and process (default: '
                       f'{batch_size})')
    group.add_argument('--lr', type=positive_float, default=lr,
                       help=f'(peak) learning rate (default: {lr})')
    group.add_argument('--seed', type=seed, default=0,
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
    group.add_argument('--num-workers', type=non_negative_int, default=0,
                       help='batch-collating worker processes (default: 0)')
    group.add_argument('--threads', type=positive_int, default=threads,
                       help='CPU threads of torch per process (default: '
                       f'{threads or "torch default"})')
    group.add_argument('--log-every', type=positive_int, default=50,
                       help='steps between logged losses (default: 50)')
    group.add_argument('--data-root', default='data',
                       help='generated datasets go here (default: data)')
    group.add_argument('--no-progress', action='store_true',
                       help='no progress bar, even on a terminal (the '
                       'per-epoch lines stay)')
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
    :obj:`out/checkpoints`), :class:`EpochLog`, :class:`Interrupt`,
    :class:`TerminalProgressBar` (unless :obj:`--no-progress`), and
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
    if not args.no_progress:  # Lightning's bar, on a terminal only
        callbacks.append(TerminalProgressBar())
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


def fit(trainer: L.Trainer, task: L.LightningModule, data: SetDataModule,
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
