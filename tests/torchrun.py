r"""Launching ``torchrun`` from tests: on 127.0.0.1 with a free port and
gloo bound to the loopback interface (resolving the host name can pick an
interface the processes cannot reach, and gloo then waits forever), and on a
timeout the agent *and its workers* killed, so no worker outlives its test.
(torchrun starts each worker in a session of its own, so killing the agent's
process group leaves them running, holding the output pipe open.)"""
import os
import signal
import socket
import subprocess
import sys
from typing import Dict, List, Optional, Tuple


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> List[int]:
    r"""Every process below :obj:`pid`, from the parent links in /proc (empty
    where there is no /proc)."""
    children: Dict[int, List[int]] = {}
    try:
        entries = os.listdir('/proc')
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def run_torchrun(script_and_args: List[str], nproc: int = 2,
                 env: Optional[Dict[str, str]] = None,
                 cwd: Optional[str] = None,
                 timeout: float = 180,
                 python: str = sys.executable) -> Tuple[int, str]:
    r"""Runs :obj:`script_and_args` under ``torchrun`` (of :obj:`python`,
    which also runs the workers) with :obj:`nproc` local processes; returns
    the exit code and the combined output."""
    cmd = [python, '-m', 'torch.distributed.run', '--nnodes=1',
           f'--nproc_per_node={nproc}', '--master_addr=127.0.0.1',
           f'--master_port={free_port()}', *script_and_args]
    env = dict(os.environ if env is None else env, GLOO_SOCKET_IFNAME='lo',
               OMP_NUM_THREADS='1')
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        workers = _descendants(proc.pid)  # before they lose their parent
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out, _ = proc.communicate(timeout=60)
        return -1, f'timed out after {timeout} s\n{out}'
    return proc.returncode, out
