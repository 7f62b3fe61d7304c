r"""Exact gradients through a streamed set: :func:`stream_encode`.

Exact gradients come from two passes over the chunks: the first runs
:math:`\phi` without autograd and keeps the state
(:class:`~torch_geometric_deepsets.SetAccumulator`); :math:`\rho`, the loss
and autograd run on the state, which gives the gradient of every summed
statistic; the second pass, run by :meth:`torch.Tensor.backward`,
recomputes :math:`\phi` one chunk at a time and back-propagates into it the
gradient each row's term of the sums receives (for the maximum: the set's
gradient split evenly between the rows that hold it, as the whole-set path
splits it).
"""
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from torch_geometric_deepsets.models import DeepSetsInvariant
from torch_geometric_deepsets.stream.accumulator import SetAccumulator
from torch_geometric_deepsets.stream.chunks import Chunk, read_chunks
from torch_geometric_deepsets.stream.parts import all_reduce


class _RngState:
    r"""The random-number state at the start of the first pass, restored
    for the second, so that dropout in :math:`\phi` draws the same masks
    (as :func:`torch.utils.checkpoint.checkpoint` does)."""
    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() \
            if torch.cuda.is_initialized() else None

    def restored(self) -> Any:
        devices = list(range(len(self.cuda))) if self.cuda else []
        fork = torch.random.fork_rng(devices=devices)

        class _Restore:
            def __enter__(inner):
                fork.__enter__()
                torch.set_rng_state(self.cpu)
                if self.cuda:
                    torch.cuda.set_rng_state_all(self.cuda)

            def __exit__(inner, *exc):
                return fork.__exit__(*exc)

        return _Restore()


class _Replay:
    r"""What the second pass needs: the accumulator, the chunks again, the
    random state and the process group."""
    def __init__(self, acc: SetAccumulator, chunks: Iterable[Chunk],
                 rng: _RngState, params: List[torch.nn.Parameter],
                 group: Any, distributed: bool) -> None:
        self.acc, self.chunks, self.rng = acc, chunks, rng
        self.params, self.group, self.distributed = params, group, distributed

    def backward(self, grads: Sequence[Optional[Tensor]]) -> List[Tensor]:
        acc = self.acc
        totals = [torch.zeros_like(p) for p in self.params]
        with self.rng.restored(), torch.enable_grad():
            for x, batch, weight in read_chunks(self.chunks):
                h, index, w = acc.rows_of(x, batch, weight)
                rows, outs, k = [], [], 0
                for part, state in zip(acc.parts, acc.states):
                    terms = part.terms(state, h, index, w)
                    for term in terms:
                        grad = grads[k]
                        k += 1
                        if grad is None or not term.requires_grad:
                            continue
                        rows.append(term)
                        outs.append(grad.index_select(0, index).to(
                            term.dtype))
                if not rows:
                    continue
                got = torch.autograd.grad(rows, self.params, outs,
                                          allow_unused=True)
                for total, g in zip(totals, got):
                    if g is not None:
                        total += g
        if self.distributed:
            # Each process back-propagated its own rows: the gradient of
            # the whole set is the sum over processes.
            for total in totals:
                all_reduce(total, torch.distributed.ReduceOp.SUM,
                           self.group)
        return totals


class _StreamedSums(torch.autograd.Function):
    r"""The summed statistics of the first pass as a function of the
    parameters of the rows' network; its backward pass is the second pass
    over the chunks."""
    @staticmethod
    def forward(ctx, replay: _Replay, *params: Tensor) -> Tuple[Tensor, ...]:
        ctx.replay = replay
        # Copies: in float64 the sums are the state tensors themselves.
        return tuple(s.clone() for s in replay.acc.sums())

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: Tensor) -> Tuple[Optional[Tensor], ...]:
        return (None, *ctx.replay.backward(grads))


def stream_encode(model: DeepSetsInvariant, chunks: Iterable[Chunk],
                  dim_size: Optional[int] = None, distributed: bool = False,
                  group: Any = None) -> Tensor:
    r"""The output of a :class:`~torch_geometric_deepsets.DeepSetsInvariant`
    on sets whose rows arrive in :obj:`chunks`, with the memory of one chunk
    plus a small per-set state: :obj:`model(x, batch, dim_size=dim_size)`
    of all rows up to floating-point rounding, for any chunking and any
    order of the rows.

    Where autograd is on and a parameter needs a gradient, the result is
    differentiable with the exact gradients of the whole-set call:
    :meth:`~torch.Tensor.backward` of a loss reads :obj:`chunks` a second
    time, recomputing :math:`\phi` one chunk at a time (so :obj:`chunks`
    must give the same rows again: a list, a :class:`Chunks`, a
    :class:`~torch.utils.data.DataLoader` without shuffling; not a
    generator). Dropout in :math:`\phi` draws the same masks in both
    passes. No gradient flows into the chunks themselves.

    Across processes (:obj:`distributed=True`), each process passes the
    rows it holds, with the global set ids and :obj:`dim_size`; the states
    are combined with :func:`torch.distributed.all_reduce`, every process
    gets the output of all rows, and after :meth:`~torch.Tensor.backward`
    every process holds the gradient of one process holding all rows. Do
    not wrap the model in
    :class:`~torch.nn.parallel.DistributedDataParallel`, which would
    average those gradients once more.

    Args:
        model (DeepSetsInvariant): The model; its pooling must be
            decomposable (see :class:`SetAccumulator`).
        chunks (Iterable): Chunks of rows: tensors (all rows in set 0),
            :obj:`(x, batch)` pairs, :obj:`(x, batch, weight)` triples
            (per-row weights: a row of weight :math:`k` counts as :math:`k`
            copies of it), or objects with :obj:`x` and :obj:`batch` (and
            :obj:`weight`, if they have one). Set ids are global, the same
            set in every chunk; a PyG :class:`~torch_geometric.data.Batch`
            collated from graphs (from a
            :class:`~torch_geometric.loader.DataLoader`; it has :obj:`ptr`)
            numbers its graphs from 0, so its sets are numbered after those
            of the collated chunks before it (not with
            :obj:`distributed=True`, where chunks give global ids).
        dim_size (int, optional): The number of sets :math:`B`.
            (default: :obj:`None`: one more than the largest set id)
        distributed (bool, optional): Whether to combine the rows of all
            processes of :obj:`group`. (default: :obj:`False`)
        group (ProcessGroup, optional): The process group.
            (default: :obj:`None`: all processes)

    Shapes:
        - **input:** chunks of :math:`(n_k, F_{in})` rows with set ids
          :math:`(n_k)`
        - **output:** :math:`(B, F_{out})`
    """
    if not isinstance(model, DeepSetsInvariant):
        raise TypeError(f"'model' must be a DeepSetsInvariant (got "
                        f"{type(model).__name__}); for other pooled "
                        f"networks use SetAccumulator")
    acc = SetAccumulator(model.aggr_module, phi=model.phi, dim_size=dim_size)
    train = torch.is_grad_enabled()
    if train and iter(chunks) is chunks:
        raise TypeError(
            "'chunks' is an iterator, which can be read once, but training "
            "reads the chunks twice (the second time in backward()); pass "
            "a list, a Chunks or a DataLoader, or run under torch.no_grad()")
    rng = _RngState()
    for x, batch, weight in read_chunks(chunks, distributed):
        acc.update(x, batch, weight)
    if distributed:
        acc.sync(group)
    params = acc.replay_parameters() if train else []
    if params:
        replay = _Replay(acc, chunks, rng, params, group, distributed)
        sums = _StreamedSums.apply(replay, *params)
    else:
        sums = acc.sums()
    return model.rho(acc.finish(sums))
