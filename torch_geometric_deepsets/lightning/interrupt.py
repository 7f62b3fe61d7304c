r"""Ctrl-C that stops training at a step boundary with a checkpoint to
resume from."""
import os.path as osp
import signal
import threading
from typing import Any, Optional

import lightning.pytorch as L
from lightning.pytorch.callbacks import Callback


class Interrupt(Callback):
    r"""Ctrl-C (SIGINT) during :meth:`~lightning.pytorch.Trainer.fit` stops
    training after the current step, saves :obj:`last.ckpt` (in the
    checkpoint callback's folder, else the trainer's
    :obj:`default_root_dir`) and prints one line saying how to resume; a
    second Ctrl-C interrupts at once. Resume with :obj:`trainer.fit(...,
    ckpt_path=path)`.

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
