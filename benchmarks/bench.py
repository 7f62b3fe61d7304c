r"""Benchmark suite: Deep Sets on ragged batches vs a padded + mask model and
vs PyG's own building blocks, on the same data and widths in one run.

    python benchmarks/bench.py            # full suite (CPU: minutes)
    python benchmarks/bench.py --quick    # tiny sizes, seconds (CI smoke)
    python benchmarks/bench.py --device cuda --scales default,gnn,large
    python benchmarks/bench.py --allocator tuned   # large blocks kept in heap

Sections: (1) training step (forward + backward) for each scale, pooling and
set-size distribution: time, elements/s, peak memory, ratio to ours (index),
the pure-GEMM time of the step's matrix products, ours from ptr, and eager
next to torch.compile'd ours and PyG (--compile); (2) pooling forward +
backward vs the memory-traffic bound and vs torch_scatter; (3) the equivariant
layer vs a Linear of the same shape; (4) margins: the heavy-tailed training
steps again under the other CPU allocator setting (a subprocess), so that the
ratios below cover both. A summary of ratios against their targets closes the
run: compiled / eager, and ours / PyG and padded / ours on heavy-tailed sizes.
Times are medians over repeats; compare ratios within one run, not absolute
numbers across runs.

Scales: default (phi 3-128-128-128, rho 128-128-1, 256 sets of mean size
200), gnn (a GNN readout: phi 64-64-64, rho 64-64-1, 128 graphs of ~25
nodes) and large (phi 3-256-256-256, rho 256-256-1, 8192 sets of 256: 2.1M
elements; sized for a GPU).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from typing import Callable, Dict, List, NamedTuple

import torch
import torch.nn.functional as F

import torch_geometric
from torch_geometric.nn import MLP
from torch_geometric.nn.aggr import DeepSetsAggregation
from torch_geometric.utils import cumsum, scatter
from torch_geometric_deepsets import (
    DeepSetsInvariant,
    JanossyPooling,
    PermutationEquivariantLayer,
    to_dense,
)
from torch_geometric_deepsets._kernels import segment_pool
from torch_geometric_deepsets._kernels.paths import use_torch_scatter
from torch_geometric_deepsets.models.tuples import (
    enumerate_tuples,
    gather_tuples,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from allocator import tune_cpu_allocator  # noqa: E402  (beside this file)


class Scale(NamedTuple):
    phi: List[int]
    rho: List[int]
    sets: int
    mean: int
    dists: tuple


SCALES = {
    'default': Scale([3, 128, 128, 128], [128, 128, 1], 256, 200,
                     ('constant', 'uniform', 'heavy')),
    'gnn': Scale([64, 64, 64], [64, 64, 1], 128, 25,
                 ('uniform', )),
    'large': Scale([3, 256, 256, 256], [256, 256, 1], 8192, 256,
                   ('constant', )),
    'quick': Scale([3, 16, 16], [16, 1], 8, 6,
                   ('constant', 'uniform', 'heavy')),
}


# Data ########################################################################

def set_sizes(dist: str, num_sets: int, mean: int,
              gen: torch.Generator) -> torch.Tensor:
    if dist == 'constant':
        return torch.full((num_sets, ), mean, dtype=torch.long)
    if dist == 'uniform':
        return torch.randint(1, 2 * mean, (num_sets, ), generator=gen)
    if dist == 'heavy':  # exponential; the largest set is >= 5x the mean
        sizes = torch.empty(num_sets).exponential_(1.0 / mean, generator=gen)
        sizes = sizes.long().clamp(min=1)
        sizes[0] = max(int(sizes.max()), 6 * mean)
        return sizes
    raise ValueError(f"unknown distribution '{dist}'")


def make_data(dist: str, num_sets: int, mean: int, device: str, seed: int = 0,
              scale: Scale = SCALES['default']):
    gen = torch.Generator().manual_seed(seed)
    sizes = set_sizes(dist, num_sets, mean, gen)
    batch = torch.repeat_interleave(torch.arange(num_sets), sizes)
    x = torch.randn(batch.numel(), scale.phi[0], generator=gen)
    y = torch.randn(num_sets, scale.rho[-1], generator=gen)
    return x.to(device), batch.to(device), y.to(device), sizes


# Implementations under test ##################################################

class PaddedDeepSets(torch.nn.Module):
    r"""The common padded approach: [B, M, F] with a mask, pooled over M."""
    def __init__(self, aggr: str, phi: List[int], rho: List[int]):
        super().__init__()
        self.phi = MLP(phi, norm=None)
        self.rho = MLP(rho, norm=None)
        self.aggr = aggr

    def forward(self, dense: torch.Tensor, mask: torch.Tensor):
        h = self.phi(dense)  # [B, M, F]: every padded slot is computed
        m = mask.unsqueeze(-1)
        if self.aggr == 'sum':
            p = (h * m).sum(1)
        elif self.aggr == 'mean':
            p = (h * m).sum(1) / m.sum(1).clamp(min=1)
        else:
            p = h.masked_fill(~m, float('-inf')).max(1).values
            p = torch.where(torch.isinf(p), 0.0, p)
        return self.rho(p)


class PyGDeepSets(torch.nn.Module):
    r"""PyG's building blocks: DeepSetsAggregation for the sum, and the MLPs
    around PyG's own reduction (Aggregation.reduce / global_*_pool) for mean
    and max."""
    def __init__(self, aggr: str, phi: List[int], rho: List[int]):
        super().__init__()
        self.phi = MLP(phi, norm=None)
        self.rho = MLP(rho, norm=None)
        self.aggr = aggr
        self.sum = DeepSetsAggregation(self.phi, self.rho)

    def forward(self, x, batch, dim_size):
        if self.aggr == 'sum':
            return self.sum(x, batch, dim_size=dim_size)
        p = scatter(self.phi(x), batch, 0, dim_size, self.aggr)
        return self.rho(p)


# Timing ######################################################################

def sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def timeit(fns: Dict[str, Callable[[], None]], device: str, repeat: int,
           warmup: int = 2) -> Dict[str, float]:
    r"""Median seconds of each function. Repeats are interleaved round-robin
    so that load on the machine hits every contender alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def step_fn(model, inputs, y) -> Callable[[], None]:
    def step():
        model.zero_grad(set_to_none=True)
        F.mse_loss(model(*inputs), y).backward()
    return step


def gemm_fn(shapes: List[tuple], device: str) -> Callable[[], None]:
    r"""The step's matrix products alone: for an [n, k] x [k, m] layer, the
    forward product, the input gradient (skipped for the first layer, as
    autograd does) and the weight gradient."""
    mats = []
    for i, (n, k, m) in enumerate(shapes):
        a = torch.randn(n, k, device=device)
        w = torch.randn(k, m, device=device)
        g = torch.randn(n, m, device=device)
        mats.append((a, w, g, i > 0))

    def run():
        for a, w, g, needs_input_grad in mats:
            a @ w
            if needs_input_grad:
                g @ w.t()
            a.t() @ g
    return run


def step_gemm_shapes(num_rows: int, num_sets: int, fused: bool,
                     scale: Scale = SCALES['default']) -> List[tuple]:
    phi, rho = scale.phi, scale.rho
    shapes = []
    for i, (k, m) in enumerate(zip(phi[:-1], phi[1:])):
        last = i == len(phi) - 2
        shapes.append((num_sets if fused and last else num_rows, k, m))
    shapes += [(num_sets, k, m) for k, m in zip(rho[:-1], rho[1:])]
    return shapes


# Peak memory #################################################################

def peak_memory(impl: str, aggr: str, dist: str, num_sets: int, mean: int,
                device: str) -> float:
    r"""Peak memory (MiB) above the inputs of one training step. On CUDA from
    the allocator; on the CPU from a fresh process's high-water mark of its
    resident set, since torch has no CPU allocator statistics."""
    if device.startswith('cuda'):
        return _measure_peak(impl, aggr, dist, num_sets, mean, device)
    cmd = [sys.executable, __file__, '--_peak', impl, aggr, dist,
           str(num_sets), str(mean)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, 'OMP_NUM_THREADS': str(
                             torch.get_num_threads())})
    return float(out.stdout.strip().splitlines()[-1])


def _status_mib(field: str) -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f'{field} not in /proc/self/status')


def _measure_peak(impl, aggr, dist, num_sets, mean, device) -> float:
    x, batch, y, _ = make_data(dist, num_sets, mean, device)
    model, inputs = build(impl, aggr, x, batch, num_sets, device)
    step = step_fn(model, inputs, y)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    # glibc would raise its mmap threshold after the first large free and
    # keep later freed tensors resident; fix it so RSS follows live tensors.
    import ctypes
    ctypes.CDLL('libc.so.6').mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # resets the high-water mark VmHWM
    base = _status_mib('VmRSS')
    step()
    return _status_mib('VmHWM') - base


def _linears(module: torch.nn.Module) -> List[torch.nn.Module]:
    return [m for m in module.modules() if hasattr(m, 'weight')]


def build(impl: str, aggr: str, x, batch, num_sets: int, device: str,
          scale: Scale = SCALES['default'], backend: str = 'inductor'):
    r"""A contender and its inputs: :obj:`ours` (from the batch vector),
    :obj:`ours ptr`, :obj:`pyg`, :obj:`padded`; a :obj:`compiled` suffix
    wraps the model in :func:`torch.compile`."""
    torch.manual_seed(0)
    ours = DeepSetsInvariant(scale.phi, scale.rho, aggr=aggr)
    name = impl.replace(' compiled', '')
    if name == 'ours':
        model = ours
        inputs = (x, batch, None, num_sets)
    elif name == 'ours ptr':
        model = ours
        ptr = cumsum(torch.bincount(batch, minlength=num_sets))
        inputs = (x, None, ptr, None)
    elif name == 'pyg':
        model = PyGDeepSets(aggr, scale.phi, scale.rho)
        inputs = (x, batch, num_sets)
    else:
        model = PaddedDeepSets(aggr, scale.phi, scale.rho)
        inputs = to_dense(x, batch, dim_size=num_sets)
    # The same weights in every implementation, layer by layer.
    for src, dst in zip(_linears(ours.phi) + _linears(ours.rho),
                        _linears(model.phi) + _linears(model.rho)):
        dst.load_state_dict(src.state_dict())
    model = model.to(device)
    if impl.endswith(' compiled'):
        model = torch.compile(model, backend=backend)
    return model, inputs


# Sections ####################################################################

IMPLS = ('ours', 'ours ptr', 'pyg', 'padded')
COMPILED = ('ours compiled', 'pyg compiled')


def bench_steps(args, rows: List[Dict]) -> None:
    for scale_name in args.scales:
        scale = SCALES[scale_name]
        impls = IMPLS + (COMPILED if args.compile else ())
        print(f'\n## Training step ({scale_name}), phi {scale.phi}, rho '
              f'{scale.rho}, {scale.sets} sets of mean size {scale.mean}')
        print(f"{'pool':5} {'sizes':9} {'impl':14} {'ms':>9} {'Melem/s':>8} "
              f"{'peak MiB':>9} {'x ours':>7} {'GEMM ms':>8} {'x GEMM':>7}")
        for dist in scale.dists:
            if args.dists and dist not in args.dists:
                continue
            x, batch, y, sizes = make_data(dist, scale.sets, scale.mean,
                                           args.device, scale=scale)
            # Compiling takes long: the compiled contenders run on the
            # first set-size distribution of a scale only.
            impls = impls[:len(IMPLS)] if dist != scale.dists[0] else impls
            if args.compile and dist == scale.dists[0]:
                # Compile each scale as a fresh process would: code compiled
                # at another scale's shapes would be recompiled with dynamic
                # shapes here, slower than what a user training at this
                # scale runs.
                torch.compiler.reset()
            n = x.size(0)
            # Steps of a few ms are at the mercy of one descheduling: take
            # the median over more repeats.
            repeat = args.repeat * (10 if n < 20_000 else 1)
            for aggr in ('sum', 'mean', 'max'):
                fused = aggr in ('sum', 'mean')
                shapes = step_gemm_shapes(n, scale.sets, fused, scale)
                fns = {'gemm': gemm_fn(shapes, args.device)}
                for impl in impls:
                    if impl == 'padded' and n > 1_000_000:
                        continue  # would not fit next to the others
                    model, inputs = build(impl, aggr, x, batch, scale.sets,
                                          args.device, scale,
                                          args.compile_backend)
                    fns[impl] = step_fn(model, inputs, y)
                secs = timeit(fns, args.device, repeat)
                gemm, ours = secs.pop('gemm'), secs['ours']
                for impl, sec in secs.items():
                    memory = args.memory and scale_name == 'default' and \
                        'compiled' not in impl and impl != 'ours ptr'
                    peak = peak_memory(impl, aggr, dist, scale.sets,
                                       scale.mean, args.device) if memory \
                        else float('nan')
                    row = dict(section='step', scale=scale_name, pool=aggr,
                               allocator=args.allocator,
                               sizes=dist, impl=impl, ms=sec * 1e3,
                               melem_per_s=n / sec / 1e6, peak_mib=peak,
                               ratio_to_ours=sec / ours, gemm_ms=gemm * 1e3,
                               ratio_to_gemm=sec / gemm, rows=n,
                               max_over_mean=float(sizes.max() /
                                                   sizes.float().mean()))
                    rows.append(row)
                    mine = impl == 'ours'
                    print(f"{aggr:5} {dist:9} {impl:14} {sec * 1e3:9.2f} "
                          f"{row['melem_per_s']:8.2f} {peak:9.1f} "
                          f"{row['ratio_to_ours']:7.2f} "
                          f"{gemm * 1e3 if mine else float('nan'):8.2f} "
                          f"{sec / gemm if mine else float('nan'):7.2f}")
            if args.compile and dist == scale.dists[0]:
                compile_overhead(args, scale_name, rows)


def compile_overhead(args, scale_name: str, rows: List[Dict]) -> None:
    r"""torch.compile's fixed cost per training step on this machine: the
    step of a :obj:`Linear(64, 1)` on 8 rows, compiled against eager, where
    the computation itself is negligible (guards, the compiled forward's
    and backward's Python wrappers)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 1).to(args.device)
    x = torch.randn(8, 64, device=args.device)
    y = torch.randn(8, 1, device=args.device)
    compiled = torch.compile(torch.nn.Linear(64, 1).to(args.device),
                             backend=args.compile_backend)
    secs = timeit({'eager': step_fn(lin, (x, ), y),
                   'compiled': step_fn(compiled, (x, ), y)},
                  args.device, 5 * args.repeat)
    rows.append(dict(section='compile_overhead', scale=scale_name,
                     eager_ms=secs['eager'] * 1e3,
                     compiled_ms=secs['compiled'] * 1e3))
    print(f"fixed cost of torch.compile per step (Linear(64, 1) on 8 rows): "
          f"{(secs['compiled'] - secs['eager']) * 1e3:.3f} ms "
          f"({secs['compiled'] * 1e3:.3f} compiled vs "
          f"{secs['eager'] * 1e3:.3f} ms eager)")


def bench_pooling(args, rows: List[Dict]) -> None:
    n, d, num_sets = args.pool_rows, args.pool_channels, args.pool_sets
    gen = torch.Generator().manual_seed(1)
    sizes = set_sizes('heavy', num_sets, max(n // num_sets, 1), gen)
    sizes = (sizes.double() / sizes.sum() * n).long().clamp(min=1)
    batch = torch.repeat_interleave(torch.arange(num_sets), sizes)
    n = batch.numel()
    ptr = cumsum(sizes)
    x = torch.randn(n, d, generator=gen).to(args.device)
    batch, ptr = batch.to(args.device), ptr.to(args.device)
    grad = torch.randn(num_sets, d, device=args.device)
    buf = torch.empty_like(x)

    def copy_x():
        buf.copy_(x)
    # The copy is timed with the contenders, round-robin, so that it sees
    # the same load and cache state; its median sets the bound.
    copy = timeit({'copy': copy_x}, args.device, args.repeat)['copy']
    # Bytes: forward reads x; backward writes dx (max also re-reads x).
    bytes_per_elem = x.element_size()
    print(f'\n## Pooling forward + backward, {n} rows x {d} '
          f'({num_sets} sets, heavy-tailed); copy bandwidth '
          f'{2 * x.numel() * bytes_per_elem / copy / 1e9:.1f} GB/s '
          f'(first measure; each bound below uses the copy timed with it)')
    print(f"{'pool':5} {'impl':16} {'ms':>8} {'bound ms':>9} {'x bound':>8}")

    def fwd_bwd(fn):
        def run():
            xi = x.detach().requires_grad_()
            fn(xi).backward(grad)
        return run

    impls = {
        'ours (ptr)': lambda r: lambda t: segment_pool(t, None, ptr,
                                                       num_sets, r),
        'ours (index)': lambda r: lambda t: segment_pool(t, batch, None,
                                                         num_sets, r),
        'pyg scatter': lambda r: lambda t: scatter(t, batch, 0, num_sets, r),
    }
    if use_torch_scatter():
        import torch_scatter

        def ts(r):
            if r == 'max':
                return lambda t: torch_scatter.segment_csr(t, ptr, None,
                                                           'max')
            return lambda t: torch_scatter.segment_csr(t, ptr, None, r)
        impls['torch_scatter csr'] = ts
    for reduce in ('sum', 'mean', 'max'):
        passes = 3 if reduce == 'max' else 2
        fns = {name: fwd_bwd(make(reduce)) for name, make in impls.items()}
        secs = timeit({'copy': copy_x, **fns}, args.device, args.repeat)
        bound = secs.pop('copy') / 2 * passes  # a copy moves two passes
        for name, sec in secs.items():
            rows.append(dict(section='pool', pool=reduce, impl=name,
                             ms=sec * 1e3, bound_ms=bound * 1e3,
                             ratio_to_bound=sec / bound))
            print(f'{reduce:5} {name:16} {sec * 1e3:8.2f} {bound * 1e3:9.2f} '
                  f'{sec / bound:8.2f}')


def bench_equivariant(args, rows: List[Dict]) -> None:
    n, d = args.pool_rows, args.pool_channels
    print(f'\n## Equivariant layer vs Linear, {n} rows, {d} -> {d}, '
          f'{args.pool_sets} sets (forward + backward)')
    x = torch.randn(n, d, device=args.device)
    batch = torch.sort(torch.randint(0, args.pool_sets, (n, ))).values.to(
        args.device)
    # A dense output gradient, as a loss gives: .sum().backward() would
    # hand both contenders a stride-0 gradient that every GEMM copies first.
    grad_out = torch.randn(n, d, device=args.device)
    for aggr in ('sum', 'mean', 'max'):
        for tied in (False, True):
            layer = PermutationEquivariantLayer(d, d, aggr=aggr,
                                                tied=tied).to(args.device)
            lin = torch.nn.Linear(d, d).to(args.device)

            def run(module, *inputs):
                def step():
                    module.zero_grad(set_to_none=True)
                    xi = x.detach().requires_grad_()
                    module(xi, *inputs).backward(grad_out)
                return step
            secs = timeit({'layer': run(layer, batch, None, args.pool_sets),
                           'linear': run(lin)}, args.device, args.repeat)
            t_layer, t_lin = secs['layer'], secs['linear']
            rows.append(dict(section='equivariant', pool=aggr, tied=tied,
                             ms=t_layer * 1e3, linear_ms=t_lin * 1e3,
                             ratio_to_linear=t_layer / t_lin))
            print(f'{aggr:5} tied={tied!s:5} {t_layer * 1e3:8.2f} ms vs '
                  f'Linear {t_lin * 1e3:8.2f} ms: {t_layer / t_lin:5.2f}x')


#: (k, set size, sets per batch): a permutations step of well under 1 s on
#: 2 CPU cores (90, 720, 2,450 and 117,600 ordered tuples per set).
JANOSSY_CASES = ((2, 10, 256), (3, 10, 128), (2, 50, 64), (3, 50, 4))
JANOSSY_PHI, JANOSSY_RHO = [3, 64, 64], [64, 64, 1]


def bench_janossy(args, rows: List[Dict]) -> None:
    r"""A training step of :class:`JanossyPooling` (mean) with ordered
    tuples and with canonical subsets, and the part of it spent forming the
    tuples: enumerating them and gathering their rows, forward and backward
    (the elements carry gradients, as messages inside a GNN do), next to
    the part of phi that runs on the tuples (all but its last layer, which
    runs after the pooling), forward and backward."""
    print(f'\n## Janossy pooling: permutations vs combinations, phi '
          f'{JANOSSY_PHI}, rho {JANOSSY_RHO}, mean (training step, '
          f'elements with gradients)')
    print(f"{'k':>2} {'n':>4} {'sets':>5} {'tuples':13} {'T':>9} "
          f"{'step ms':>9} {'tuples ms':>10} {'share':>6} {'phi ms':>8} "
          f"{'share':>6}")
    cases = ((2, 4, 8), (3, 4, 4)) if args.quick else JANOSSY_CASES
    for k, n, num_sets in cases:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(num_sets * n, JANOSSY_PHI[0], generator=gen).to(
            args.device).requires_grad_()
        batch = torch.arange(num_sets, device=args.device).repeat_interleave(
            n)
        y = torch.randn(num_sets, 1, device=args.device)
        fns, counts = {}, {}
        for tuples in ('permutations', 'combinations'):
            torch.manual_seed(0)
            model = JanossyPooling(JANOSSY_PHI, JANOSSY_RHO, k=k,
                                   tuples=tuples, max_tuples=2**31).to(
                                       args.device)
            fns[tuples] = step_fn(model, (x, batch, None, num_sets), y)

            def form(tuples=tuples):
                _, _, slots = enumerate_tuples(batch, num_sets, k, 2**31,
                                               tuples)
                out = gather_tuples(x, batch, slots, -2, tuples)
                out.backward(torch.ones_like(out))
            fns[tuples + ' tuples'] = form
            counts[tuples] = int(enumerate_tuples(batch, num_sets, k, 2**31,
                                                  tuples)[1].sum())
            # phi up to its last layer on the T tuples (that layer runs
            # after the pooling, on the sets), forward and backward.
            feats = torch.randn(counts[tuples], k * JANOSSY_PHI[0],
                                device=args.device, requires_grad=True)
            grad = torch.randn(counts[tuples], JANOSSY_PHI[-2],
                               device=args.device)

            def phi(model=model, feats=feats, grad=grad):
                model.phi.hidden(feats).backward(grad)
            fns[tuples + ' phi'] = phi
        secs = timeit(fns, args.device, args.repeat)
        for tuples in ('permutations', 'combinations'):
            step, form = secs[tuples], secs[tuples + ' tuples']
            phi = secs[tuples + ' phi']
            row = dict(section='janossy', k=k, set_size=n, sets=num_sets,
                       tuples=tuples, num_tuples=counts[tuples],
                       ms=step * 1e3, tuples_ms=form * 1e3,
                       tuples_share=form / step, phi_ms=phi * 1e3,
                       phi_share=phi / step)
            rows.append(row)
            print(f'{k:2} {n:4} {num_sets:5} {tuples:13} '
                  f'{counts[tuples]:9,} {step * 1e3:9.2f} {form * 1e3:10.2f} '
                  f'{form / step:6.2f} {phi * 1e3:8.2f} {phi / step:6.2f}')


def margin_scale(args) -> str:
    return 'quick' if args.quick else 'default'


def bench_margins(args, rows: List[Dict]) -> None:
    r"""The heavy-tailed training steps (ours, PyG, padded) under the other
    allocator setting than this run's, in a fresh process: glibc's settings
    hold for a whole process, and they move these ratios (see
    ``allocator.py``)."""
    other = 'tuned' if args.allocator == 'glibc' else 'glibc'
    print(f'\n## Margins: heavy-tailed steps with --allocator {other} '
          '(subprocess)')
    cmd = [sys.executable, os.path.abspath(__file__), '--allocator', other,
           '--sections', 'step', '--scales', margin_scale(args), '--dists',
           'heavy', '--no-compile', '--no-memory', '--no-summary',
           '--device', args.device] + (['--quick'] if args.quick else [])
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'rows.json')
        subprocess.run(cmd + ['--json', out], check=True)
        with open(out) as f:
            rows.extend(json.load(f))


def _step_ms(rows: List[Dict], **keys) -> float:
    for row in rows:
        if row['section'] == 'step' and all(row.get(k) == v
                                            for k, v in keys.items()):
            return row['ms']
    return float('nan')


def _verdict(ratio: float, target: float, at_most: bool) -> str:
    if ratio != ratio:  # NaN: not measured in this run
        return ''
    met = ratio <= target if at_most else ratio >= target
    return 'met' if met else 'MISSED'


def summary(args, rows: List[Dict]) -> None:
    r"""Ratios of this run against the targets of issue 21, from the rows
    of the sections above (one run, so one machine state)."""
    steps = [row for row in rows if row['section'] == 'step']
    compiled = [row for row in steps if row['impl'] == 'ours compiled']
    if compiled:
        print('\n## Summary: compiled / eager (training step; targets: '
              'ours compiled <= ours eager and <= PyG compiled)')
        print("(c - e: ours compiled minus ours eager; fixed: torch."
              "compile's cost per step on a Linear(64, 1) of 8 rows, "
              "measured with the scale)")
        print(f"{'scale':8} {'pool':5} {'sizes':9} {'ours c/e':>9} "
              f"{'ours c/pyg c':>13} {'pyg c/e':>8} {'c - e ms':>9} "
              f"{'fixed ms':>9}  verdict")
        for row in compiled:
            keys = dict(scale=row['scale'], pool=row['pool'],
                        sizes=row['sizes'])
            ours = _step_ms(steps, impl='ours', **keys)
            pyg = _step_ms(steps, impl='pyg', **keys)
            pyg_c = _step_ms(steps, impl='pyg compiled', **keys)
            to_eager, to_pyg = row['ms'] / ours, row['ms'] / pyg_c
            met = (_verdict(to_eager, 1.0, True) == 'met'
                   and _verdict(to_pyg, 1.0, True) == 'met')
            fixed = next((r['compiled_ms'] - r['eager_ms'] for r in rows
                          if r['section'] == 'compile_overhead'
                          and r['scale'] == row['scale']), float('nan'))
            print(f"{row['scale']:8} {row['pool']:5} {row['sizes']:9} "
                  f"{to_eager:9.2f} {to_pyg:13.2f} {pyg_c / pyg:8.2f} "
                  f"{row['ms'] - ours:9.3f} {fixed:9.3f}  "
                  f"{'met' if met else 'MISSED'}")
    janossy = [row for row in rows if row['section'] == 'janossy']
    if janossy:
        print('\n## Summary: Janossy pooling (training step; targets: '
              'forming the tuples takes less of a step than phi on the '
              'tuples)')
        print(f"{'k':>2} {'n':>4} {'tuples':13} {'step perm/comb':>15} "
              f"{'T perm/comb':>12} {'tuples share':>13} "
              f"{'phi share':>11}  verdict")
        for row in janossy:
            comb = next(r for r in janossy if r['tuples'] == 'combinations'
                        and r['k'] == row['k']
                        and r['set_size'] == row['set_size'])
            first = row['tuples'] == 'permutations'
            step = f"{row['ms'] / comb['ms']:15.2f}" if first else ' ' * 15
            count = f"{row['num_tuples'] / comb['num_tuples']:12.1f}" \
                if first else ' ' * 12
            print(f"{row['k']:2} {row['set_size']:4} {row['tuples']:13} "
                  f"{step} {count} {row['tuples_share']:13.2f} "
                  f"{row['phi_share']:11.2f}  "
                  f"{_verdict(row['tuples_share'], row['phi_share'], True)}")
    scale = margin_scale(args)
    heavy = [row for row in steps
             if row['scale'] == scale and row['sizes'] == 'heavy']
    allocators = sorted({row['allocator'] for row in heavy})
    if not heavy:
        return
    print(f'\n## Summary: CPU margins, heavy-tailed sizes ({scale} scale)')
    print(f"{'ratio':22} {'target':>7} " + ''.join(f'{a:>9} '
                                                   for a in allocators))
    checks = [('ours / pyg', 'sum', 0.6, True),
              ('ours / pyg', 'mean', 0.6, True),
              ('ours / pyg', 'max', 0.8, True),
              ('padded / ours', 'sum', None, False),
              ('padded / ours', 'mean', None, False),
              ('padded / ours', 'max', 12.0, False)]
    for name, pool, target, at_most in checks:
        cells, verdicts = [], []
        for allocator in allocators:
            keys = dict(scale=scale, sizes='heavy', pool=pool,
                        allocator=allocator)
            ours = _step_ms(heavy, impl='ours', **keys)
            other = 'pyg' if name.startswith('ours') else 'padded'
            ratio = _step_ms(heavy, impl=other, **keys) / ours
            ratio = 1 / ratio if name.startswith('ours') else ratio
            cells.append(f'{ratio:9.2f} ')
            if target is not None:
                verdicts.append(_verdict(ratio, target, at_most))
        bound = '' if target is None else \
            f"{'<=' if at_most else '>='}{target:g}"
        verdict = '' if target is None else \
            ('met' if all(v == 'met' for v in verdicts) else 'MISSED')
        print(f'{name + " " + pool:22} {bound:>7} ' + ''.join(cells)
              + f' {verdict}')


#: The sections a run may name in --sections, in the order they run.
SECTIONS = {
    'step': bench_steps,
    'pool': bench_pooling,
    'equivariant': bench_equivariant,
    'margins': bench_margins,
    'janossy': bench_janossy,
}


def main(argv=None) -> List[Dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes: checks that the suite runs')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--json', help='write all rows to this file')
    parser.add_argument('--no-memory', dest='memory', action='store_false')
    parser.add_argument('--sections', default=','.join(SECTIONS),
                        help=f"comma-separated among {', '.join(SECTIONS)}")
    parser.add_argument('--dists', default=None,
                        help='comma-separated set-size distributions of the '
                        'training steps (default: each scale\'s own)')
    parser.add_argument('--no-summary', dest='summary',
                        action='store_false',
                        help='skip the closing summary of ratios')
    parser.add_argument('--scales', default=None,
                        help='comma-separated training-step scales among '
                        f"{', '.join(s for s in SCALES if s != 'quick')} "
                        '(default: default,gnn; large needs a GPU)')
    parser.add_argument('--no-compile', dest='compile', action='store_false',
                        help='skip the torch.compile contenders')
    parser.add_argument('--compile-backend', default='inductor',
                        help='torch.compile backend (default: inductor)')
    parser.add_argument(
        '--allocator', choices=('glibc', 'tuned'), default='glibc',
        help="'tuned' runs tune_cpu_allocator() first: glibc keeps large "
        "freed blocks instead of mapping and page-faulting them afresh")
    parser.add_argument('--_peak', nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    allocator = 'glibc defaults'
    if args.allocator == 'tuned' and not args._peak:
        allocator = ('tune_cpu_allocator()' if tune_cpu_allocator() else
                     'tune_cpu_allocator() not applicable: C library defaults')
    if args._peak:
        impl, aggr, dist, num_sets, mean = args._peak
        print(_measure_peak(impl, aggr, dist, int(num_sets), int(mean),
                            'cpu'))
        return []
    if args.quick:
        args.scales, args.repeat = args.scales or 'quick', 2
        args.pool_rows, args.pool_channels, args.pool_sets = 400, 8, 16
    else:
        args.scales, args.repeat = args.scales or 'default,gnn', 7
        args.pool_rows, args.pool_channels, args.pool_sets = 65536, 128, 1024
    args.scales = args.scales.split(',')
    args.dists = args.dists.split(',') if args.dists else None
    unknown = [s for s in args.scales if s not in SCALES]
    if unknown:
        parser.error(f"unknown scale(s) {unknown}; choose from "
                     f"{', '.join(SCALES)}")

    print(f'# torch_geometric_deepsets benchmarks, {date.today()}')
    print(f'# {platform.processor() or platform.machine()}, '
          f'{torch.get_num_threads()} threads, device {args.device}'
          + (f' ({torch.cuda.get_device_name()})'
             if args.device.startswith('cuda') else ''))
    print(f'# torch {torch.__version__}, torch_geometric '
          f'{torch_geometric.__version__}, torch_scatter '
          f'{"yes" if use_torch_scatter() else "no"}')
    print(f'# CPU allocator: {allocator}')
    rows: List[Dict] = []
    sections = args.sections.split(',')
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from "
                     f"{', '.join(SECTIONS)}")
    for name, section in SECTIONS.items():
        if name in sections:
            section(args, rows)
    if args.summary:
        summary(args, rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    main()
