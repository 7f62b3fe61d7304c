r"""The scripts of ``examples/`` as modules for the tests: the folder goes on
:obj:`sys.path`, as it is for ``python examples/NAME.py``, so that a script
and the tests share one ``set_task`` module."""
import importlib
import os
import os.path as osp
import signal
import subprocess
import sys
from types import ModuleType
from typing import Any, Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
EXAMPLES = osp.join(ROOT, 'examples')


def load(name: str) -> ModuleType:
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)
    return importlib.import_module(name)


def env(**extra: str) -> Dict[str, str]:
    r"""The environment of a script run in a subprocess: one thread, gloo on
    the loopback interface."""
    out = dict(os.environ, OMP_NUM_THREADS='1', GLOO_SOCKET_IFNAME='lo',
               MASTER_ADDR='127.0.0.1', PYTHONUNBUFFERED='1')
    out.update(extra)
    return out


def start(script: str, args: List[str], cwd: Optional[str] = None,
          **extra: str) -> subprocess.Popen:
    r"""Starts ``python SCRIPT ARGS`` in a session of its own (so that
    :func:`stop` reaches every process it starts), output merged into one
    pipe."""
    path = script if osp.isabs(script) else osp.join(EXAMPLES, script)
    return subprocess.Popen([sys.executable, path, *args], cwd=cwd or ROOT,
                            env=env(**extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    r"""Kills :obj:`proc`'s whole session (a test that failed midway)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


def run(script: str, args: List[str], timeout: float = 240,
        **extra: str) -> subprocess.CompletedProcess:
    proc = start(script, args, **extra)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        stop(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


def assert_reloads(path: str, model: Any) -> Any:
    r"""The checkpoint at :obj:`path` loads with :obj:`weights_only=True`,
    and ``SetTask.load_from_checkpoint(path)`` alone rebuilds
    :obj:`model`: same class, same parameters and buffers. Returns the
    loaded task."""
    import torch
    torch.load(path, map_location='cpu', weights_only=True)
    from torch_geometric_deepsets.lightning import SetTask
    task = SetTask.load_from_checkpoint(path, map_location='cpu')
    assert type(task.model) is type(model)
    a, b = model.state_dict(), task.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k].cpu(), b[k]) for k in a)
    return task
