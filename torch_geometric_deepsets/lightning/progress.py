r"""What a training run prints: Lightning's progress bar where someone
watches it, and one plain line per epoch."""
import sys
from typing import Any, Dict, List, Optional

import lightning.pytorch as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar


def interactive() -> bool:
    r"""Whether standard output is watched: a terminal, or a Jupyter kernel
    (which draws the bar in the notebook)."""
    try:
        if sys.stdout is not None and sys.stdout.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        pass
    ipython = sys.modules.get('IPython')
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, 'kernel', None) is not None


class TerminalProgressBar(TQDMProgressBar):
    r"""Lightning's :class:`~lightning.pytorch.callbacks.TQDMProgressBar`,
    drawn only where someone watches it: when standard output is a terminal
    or a Jupyter notebook. Written to a file or a pipe (a batch job's log,
    :obj:`python train.py > log`), a bar would add a line at every refresh,
    thousands per run; there this one draws nothing, and :class:`EpochLog`
    prints one plain line per epoch. Where the output goes is checked each
    time the bar would draw.

    .. code-block:: python

        trainer = L.Trainer(callbacks=[TerminalProgressBar(), EpochLog()])

    Args:
        refresh_rate (int, optional): Batches between redraws.
            (default: :obj:`1`)
        process_position (int, optional): Line offset of the bar, for
            several trainers at once. (default: :obj:`0`)
        leave (bool, optional): Keep every epoch's finished bar on screen.
            (default: :obj:`False`)
    """
    @property
    def is_enabled(self) -> bool:
        return super().is_enabled and interactive()


def _print(trainer: L.Trainer, line: str) -> None:
    bar = trainer.progress_bar_callback
    if bar is not None and not bar.is_disabled:
        bar.print(line)  # above the bar, which stays where it is
    else:
        print(line, flush=True)


class EpochLog(Callback):
    r"""One line per epoch with the logged metrics, and one per validation
    in the middle of an epoch (:obj:`val_check_interval`), such as
    :obj:`epoch 3 step 400: train_loss_epoch 0.0214, val_loss 0.0193`. The
    line goes above a drawn progress bar, and to standard output otherwise.
    It shows the epoch-level metrics whose names start with :obj:`train_`
    and :obj:`val_` (what :class:`SetTask` logs), and keeps every line's
    values in :attr:`history`, which is saved in every checkpoint, so a
    resumed run has the whole history. Only rank 0 prints.

    .. code-block:: python

        log = EpochLog()
        trainer = L.Trainer(callbacks=[TerminalProgressBar(), log])
        trainer.fit(task, datamodule=data)
        log.history  # [{'epoch': 0, 'step': 40, 'train_loss_epoch': ...}]
    """
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
        # The epoch-level values (train_loss_epoch) are computed by now.
        train = self._metrics(trainer, 'train_')
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
