r"""One training step on a set bigger than the whole-set path can hold:
:func:`~torch_geometric_deepsets.stream_encode` reads the set from a
memory-mapped file in chunks (issue 20).

:math:`\phi` is 3→128→128→128, :math:`\rho` 128→128→1, mean pooling (so
pooling moves in front of :math:`\phi`'s last layer in both paths), Adam,
a squared error. Every measurement runs in a subprocess of its own, so its
peak resident memory is its own: the whole-set path under an address-space
cap (``RLIMIT_AS``, ``--cap-gib``), to find the largest set it can train
without taking the shared machine's memory.

Reported per run: seconds per step, the peak resident set (``VmHWM``) and
the peak of its anonymous part (``RssAnon``, sampled every 20 ms: the
memory the step allocates, without the file pages of the memory map, which
the kernel may drop at any time).

Usage::

    python benchmarks/stream.py --rows 50000000 --chunk 250000
    python benchmarks/stream.py --rows 2000000 --chunk 100000 --quick
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status(key: str) -> int:
    r"""A field of /proc/self/status in bytes (0 where there is none)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakAnon:
    r"""Samples the anonymous resident memory in a thread."""
    def __init__(self, every: float = 0.02) -> None:
        self.peak, self.every = _status('RssAnon'), every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, _status('RssAnon'))

    def __enter__(self) -> 'PeakAnon':
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status('RssAnon'))


def write_file(path: str, rows: int, block: int = 2_000_000) -> None:
    r"""Writes :obj:`rows` float32 points (3 features) to :obj:`path`, in
    blocks, unless a file of that size is there."""
    if os.path.exists(path) and os.path.getsize(path) >= rows * 12:
        return
    data = np.memmap(path, dtype=np.float32, mode='w+', shape=(rows, 3))
    rng = np.random.default_rng(0)
    for start in range(0, rows, block):
        stop = min(start + block, rows)
        data[start:stop] = rng.standard_normal((stop - start, 3),
                                               dtype=np.float32)
    data.flush()
    del data


def build():
    import torch

    from torch_geometric_deepsets import DeepSetsInvariant
    torch.manual_seed(0)
    return DeepSetsInvariant(phi=[3, 128, 128, 128], rho=[128, 128, 1],
                             aggr='mean')


def child(args: argparse.Namespace) -> Dict[str, Any]:
    r"""One measurement, in this (sub)process."""
    if args.cap_gib:
        cap = int(args.cap_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import torch

    from torch_geometric_deepsets import Chunks, stream_encode
    torch.set_num_threads(args.threads)
    mapped = np.memmap(args.file, dtype=np.float32, mode='r',
                       shape=(args.rows, 3))
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    target = torch.ones(1, 1)
    result: Dict[str, Any] = dict(mode=args.mode, rows=args.rows,
                                  chunk=args.chunk)

    def step(mode: str) -> float:
        optimizer.zero_grad()
        start = time.perf_counter()
        if mode == 'whole':
            out = model(x)
        else:
            out = stream_encode(model, Chunks(mapped, chunk_size=args.chunk))
        loss = ((out - target)**2).sum()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    if args.mode == 'grad':
        # The gradient of one step, both ways, from the same weights.
        x = torch.from_numpy(np.array(mapped))
        grads = {}
        for mode in ('whole', 'stream'):
            optimizer.zero_grad()
            out = model(x) if mode == 'whole' else stream_encode(
                model, Chunks(mapped, chunk_size=args.chunk))
            ((out - target)**2).sum().backward()
            grads[mode] = [p.grad.clone() for p in model.parameters()]
        diffs = [float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))
                 for a, b in zip(grads['whole'], grads['stream'])]
        result['max_rel_grad_diff'] = max(diffs)
        result['max_abs_grad_diff'] = max(
            float((a - b).abs().max())
            for a, b in zip(grads['whole'], grads['stream']))
        return result
    try:
        with PeakAnon() as anon:
            if args.mode == 'whole':
                x = torch.from_numpy(np.array(mapped))
            result['seconds'] = step(args.mode)
    except (MemoryError, RuntimeError) as error:
        result['failed'] = str(error).split('\n')[0][:200]
        return result
    result['peak_rss'] = _status('VmHWM')
    result['peak_anon'] = anon.peak
    result['file_rss_end'] = _status('RssFile')
    return result


def run_child(args: argparse.Namespace, mode: str, rows: int,
              cap_gib: Optional[float] = None,
              timeout: float = 3600) -> Dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), '--child', '--mode',
           mode, '--rows', str(rows), '--chunk', str(args.chunk), '--file',
           args.file, '--threads', str(args.threads)]
    if cap_gib:
        cmd += ['--cap-gib', str(cap_gib)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(
            os.pathsep) if p]))
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines()
             if line.startswith('{')]
    if proc.returncode != 0 or not lines:
        return dict(mode=mode, rows=rows, failed=(
            f'exit {proc.returncode}: ' + proc.stderr.strip()[-200:]))
    return json.loads(lines[-1])


def largest_whole(args: argparse.Namespace) -> List[Dict[str, Any]]:
    r"""Doubles the set size until the whole-set step fails under the cap,
    then bisects between the last size that trained and the first that
    did not."""
    runs, ok, bad = [], None, None
    rows = args.start_rows
    while rows <= args.rows:
        run = run_child(args, 'whole', rows, args.cap_gib)
        runs.append(run)
        print(json.dumps(run), flush=True)
        if 'failed' in run:
            bad = rows
            break
        ok, rows = rows, rows * 2
    while ok is not None and bad is not None and bad - ok > args.resolution:
        mid = (ok + bad) // 2
        run = run_child(args, 'whole', mid, args.cap_gib)
        runs.append(run)
        print(json.dumps(run), flush=True)
        ok, bad = (mid, bad) if 'failed' not in run else (ok, mid)
    return runs


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rows', type=int, default=50_000_000)
    parser.add_argument('--chunk', type=int, default=250_000)
    parser.add_argument('--file', default='/tmp/tgds_stream_bench.f32')
    parser.add_argument('--cap-gib', type=float, default=8.0)
    parser.add_argument('--start-rows', type=int, default=1_000_000)
    parser.add_argument('--resolution', type=int, default=250_000)
    parser.add_argument('--grad-rows', type=int, default=1_000_000)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--quick', action='store_true',
                        help='skip the search for the whole-set limit')
    parser.add_argument('--out', default=None, help='JSON file of results')
    parser.add_argument('--child', action='store_true',
                        help=argparse.SUPPRESS)
    parser.add_argument('--mode', default='stream', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return

    write_file(args.file, args.rows)
    results: Dict[str, Any] = dict(load_before=os.getloadavg(),
                                   threads=args.threads, chunk=args.chunk,
                                   cap_gib=args.cap_gib)
    results['grad'] = run_child(args, 'grad', args.grad_rows)
    print(json.dumps(results['grad']), flush=True)
    if not args.quick:
        results['whole'] = largest_whole(args)
        trained = [r for r in results['whole'] if 'failed' not in r]
        if trained:
            largest = max(trained, key=lambda r: r['rows'])
            results['stream_at_whole_limit'] = run_child(
                args, 'stream', largest['rows'])
            print(json.dumps(results['stream_at_whole_limit']), flush=True)
    results['stream'] = run_child(args, 'stream', args.rows)
    print(json.dumps(results['stream']), flush=True)
    results['load_after'] = os.getloadavg()
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
