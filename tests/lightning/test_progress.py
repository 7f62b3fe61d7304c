r"""What a run prints: Lightning's bar only where someone watches it
(:class:`TerminalProgressBar`), one plain line per epoch
(:class:`EpochLog`)."""
import io
import sys
from contextlib import redirect_stdout
from types import SimpleNamespace

import lightning.pytorch as L
import pytest

from tests.helpers import RandomSets
from torch_geometric_deepsets import DeepSetsInvariant
from torch_geometric_deepsets.lightning import (
    EpochLog,
    SetDataModule,
    SetTask,
    TerminalProgressBar,
)
from torch_geometric_deepsets.lightning.progress import interactive


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run(stdout, epochs=3):
    r"""Trains :obj:`epochs` epochs of 5 steps with the bar and the log,
    printing to :obj:`stdout`; returns what was printed and the log."""
    log = EpochLog()
    trainer = L.Trainer(max_epochs=epochs, logger=False,
                        enable_checkpointing=False,
                        enable_model_summary=False,
                        callbacks=[TerminalProgressBar(), log])
    task = SetTask(DeepSetsInvariant([3, 4], [4, 1]))
    data = SetDataModule(RandomSets(40), RandomSets(8, seed=1),
                         batch_size=8)
    with redirect_stdout(stdout):
        trainer.fit(task, datamodule=data)
    stdout.seek(0)
    return stdout.read(), log


def test_to_a_file_one_plain_line_per_epoch(tmp_path):
    with open(tmp_path / 'log', 'w+') as f:
        out, log = run(f)
    assert '\r' not in out
    lines = out.splitlines()
    assert [line.split(':')[0] for line in lines] == [
        'epoch 0 step 5', 'epoch 1 step 10', 'epoch 2 step 15']
    assert all('train_loss_epoch' in line and 'val_mae' in line
               for line in lines)
    assert [entry['step'] for entry in log.history] == [5, 10, 15]


def test_on_a_terminal_the_bar_and_the_lines():
    out, _ = run(Terminal())
    # tqdm redraws in place: carriage returns, the epoch in the bar's title.
    assert '\r' in out and 'Epoch 2: 100%' in out
    lines = [line for line in out.replace('\r', '\n').splitlines()
             if line.startswith('epoch ')]
    assert [line.split(':')[0] for line in lines] == [
        'epoch 0 step 5', 'epoch 1 step 10', 'epoch 2 step 15']


def test_what_counts_as_watched(monkeypatch):
    with redirect_stdout(io.StringIO()):
        assert not interactive()
        with redirect_stdout(Terminal()):
            assert interactive()
        # A Jupyter kernel draws the bar in the notebook.
        monkeypatch.setitem(sys.modules, 'IPython', SimpleNamespace(
            get_ipython=lambda: SimpleNamespace(kernel=object())))
        assert interactive()
        monkeypatch.setitem(sys.modules, 'IPython', SimpleNamespace(
            get_ipython=lambda: None))  # IPython imported, no shell
        assert not interactive()
    closed = io.StringIO()
    closed.close()
    with redirect_stdout(closed):
        assert not interactive()


@pytest.mark.parametrize('stdout,enabled', [(io.StringIO, False),
                                            (Terminal, True)])
def test_the_bar_follows_where_the_output_goes(stdout, enabled):
    bar = TerminalProgressBar()
    with redirect_stdout(stdout()):
        assert bar.is_enabled is enabled and bar.is_disabled is not enabled
    bar.disable()  # Lightning's switch still turns it off
    with redirect_stdout(Terminal()):
        assert not bar.is_enabled
