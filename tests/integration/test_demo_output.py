r"""What ``make demo`` prints (``examples/digit_sum_text.py``): piped to a
file, one plain line per epoch and the results, no progress bar; on a
terminal, Lightning's bar too."""
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading

from tests.example_scripts import EXAMPLES, env

# 600 sets in batches of 16: 37 steps an epoch, 3 epochs and a bit.
ARGS = ['--num-train', '600', '--batch-size', '16', '--max-steps', '120',
        '--test-sizes', '5', '--test-per-size', '20', '--no-plot',
        '--threads', '1']


def demo(tmp_path, stdout):
    r"""Runs the demo script with :obj:`stdout` (a file or a terminal);
    returns the process and the run's results."""
    proc = subprocess.Popen(
        [sys.executable, os.path.join(EXAMPLES, 'digit_sum_text.py'), *ARGS,
         '--data-root', str(tmp_path / 'data'), '--out',
         str(tmp_path / 'run')], cwd=tmp_path, env=env(), stdout=stdout,
        stderr=subprocess.DEVNULL)
    return proc


def results(tmp_path):
    with open(tmp_path / 'run' / 'results.json') as f:
        return json.load(f)


def test_piped_to_a_file_a_line_per_epoch(tmp_path):
    with open(tmp_path / 'log', 'w') as log:
        assert demo(tmp_path, log).wait(timeout=300) == 0
    out = (tmp_path / 'log').read_text()
    assert '\r' not in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines)
                  if line.startswith('Digit sum (text)'))
    epochs = [line for line in lines[:header] if line]
    history = results(tmp_path)['history']
    assert [line.split(':')[0] for line in epochs] == [
        f"epoch {h['epoch']} step {h['step']}" for h in history]
    assert [h['step'] for h in history] == [37, 74, 111, 120]
    assert lines[-1].startswith('Results: ') and len(lines) < header + 12


def test_on_a_terminal_the_bar_too(tmp_path):
    master, slave = pty.openpty()
    # 24 rows of 100 columns (a new terminal reports 0, too narrow a bar).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0,
                                                       0))
    chunks = []

    def read():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed with the process
                return
            if not data:
                return
            chunks.append(data)
    reader = threading.Thread(target=read)
    reader.start()
    try:
        proc = demo(tmp_path, slave)
        os.close(slave)
        assert proc.wait(timeout=300) == 0
    finally:
        reader.join(timeout=60)
        os.close(master)
    # The terminal ends lines with \r\n; the bar redraws in place after a
    # bare \r.
    out = b''.join(chunks).decode(errors='replace').replace('\r\n', '\n')
    assert re.search(r'\rEpoch 3: 100%', out), out
    assert sum(line.startswith('epoch ') for line in
               out.replace('\r', '\n').splitlines()) == 4
