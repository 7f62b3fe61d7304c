r"""What the example scripts share, one file per job: the task
(``task.py``: :class:`SetTask`, a :class:`~lightning.pytorch.LightningModule`
for regression and classification on PyG batches of sets, and ``models.py``:
the names under which a checkpoint finds its model's builder), the data
(``data.py``: :class:`SetDataModule`, a
:class:`~torch_geometric.data.LightningDataset` with a fast, resumable loader
for generated sets), the callbacks (``callbacks.py``) and the command-line
options that become a :class:`~lightning.pytorch.Trainer` (``cli.py``).

The loop, checkpoints, resuming, loggers, precision, gradient clipping and
data-parallel training are Lightning's; this package only says what is
special about sets. An experiment script reads top to bottom like this::

    import argparse
    import set_task                       # this package, beside the script

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
    task = set_task.SetTask(build_model, {'hidden': args.hidden},
                            loss='l1', lr=args.lr, schedule='one_cycle')
    trainer = set_task.build_trainer(args, parser)
    set_task.fit(trainer, task, data, args)
    if trainer.is_global_zero:            # rank 0 reports
        pred = set_task.predict(task, test)

``build_model`` is a function (or class) at the top level of the script
that returns any module called as ``model(batch.x, batch.batch,
dim_size=batch.num_graphs)`` with one row per set (the package's models
are). The checkpoint records its name and arguments, so
``SetTask.load_from_checkpoint(path)`` rebuilds the trained model
(:doc:`/howto/load_model`). A task whose model takes other inputs, or whose
output is one score per element, subclasses :class:`SetTask` and overrides
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

from .callbacks import EpochLog, Interrupt
from .cli import (
    Outcome,
    add_arguments,
    build_trainer,
    data_module,
    fit,
    history,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
    seed_everything,
    step_count,
)
from .data import SetDataModule, SetLoader, one_process_at_a_time, predict
from .models import import_path, locate
from .task import SetTask

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
    'history',
    'predict',
    'import_path',
    'locate',
    'positive_int',
    'non_negative_int',
    'positive_float',
    'non_negative_float',
    'step_count',
    'seed',
]
