r"""What several test modules share: random batches of sets, a small
dataset of sets to train on, a small heterogeneous graph, and dispatch
modes that watch the aten operations a
forward runs. Test modules import from here (and the other support modules),
never from each other: tests/test_layout.py checks that."""
import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from torch_geometric.data import Data, HeteroData, InMemoryDataset

AGGRS = ['sum', 'mean', 'max']


def make_batch(sizes, channels, dtype=torch.float32, shuffle=False,
               generator=None):
    r"""Random elements for sets of the given sizes (zero allowed) and their
    sorted batch vector (or a row-shuffled one)."""
    sizes_t = torch.tensor(sizes, dtype=torch.long)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), sizes_t)
    x = torch.randn(int(sizes_t.sum()), channels, dtype=dtype,
                    generator=generator)
    if shuffle and batch.numel() > 1:
        perm = torch.randperm(batch.numel(), generator=generator)
        x, batch = x[perm], batch[perm]
    return x, batch


def pooled_by_hand(model, x, batch, num_sets, reduce):
    r"""Theorem 2 by hand: :math:`\rho` of every set's pooled
    :math:`\phi(x)`, set by set in a loop (an empty set pools to 0)."""
    h = model.phi(x)
    rows = []
    for s in range(num_sets):
        hs = h[batch == s]
        if hs.size(0) == 0:
            rows.append(torch.zeros(h.size(1), dtype=h.dtype))
        elif reduce == 'sum':
            rows.append(hs.sum(0))
        elif reduce == 'mean':
            rows.append(hs.mean(0))
        else:
            rows.append(hs.max(0).values)
    return model.rho(torch.stack(rows))


def ptr_of(batch, num_sets):
    r"""The :obj:`ptr` of a sorted batch vector."""
    counts = torch.bincount(batch, minlength=num_sets)
    return torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])


#: How the kernels and models get the sets of the rows: sorted or unsorted
#: set ids, ptr alone (sorted rows), or both.
LAYOUTS = ['sorted', 'unsorted', 'ptr', 'both']


def grouping(batch, num_sets, layout):
    r"""(index, ptr) as the models pass them on for each of
    :data:`LAYOUTS` (:obj:`batch` sorted, or shuffled for
    :obj:`"unsorted"`)."""
    if layout in ('sorted', 'unsorted'):
        return batch, None
    ptr = ptr_of(batch, num_sets)
    return (batch if layout == 'both' else None), ptr


def scatter_backends():
    r"""The values of :obj:`torch_geometric.typing.WITH_TORCH_SCATTER` to
    run a kernel test with: :obj:`True` too where torch-scatter is
    installed."""
    import torch_geometric.typing
    return [False, True] if torch_geometric.typing.WITH_TORCH_SCATTER \
        else [False]


def molecule(num_atoms, num_bonds, generator):
    r"""A heterogeneous graph of atoms (3 features) and bonds (5 features),
    every atom in one bond."""
    data = HeteroData()
    data['atom'].x = torch.randn(num_atoms, 3, generator=generator)
    data['bond'].x = torch.randn(num_bonds, 5, generator=generator)
    src = torch.arange(num_atoms) % num_bonds
    data['atom', 'in', 'bond'].edge_index = torch.stack(
        [torch.arange(num_atoms), src])
    data['bond', 'has', 'atom'].edge_index = torch.stack(
        [src, torch.arange(num_atoms)])
    return data


#: Operations that read a value back to the host or give an output whose
#: shape depends on the data (which needs such a read).
SYNCING = {
    'aten._local_scalar_dense', 'aten.item', 'aten.is_nonzero', 'aten.equal',
    'aten.nonzero', 'aten.nonzero_static', 'aten.bincount', 'aten.unique',
    'aten._unique', 'aten._unique2', 'aten.unique_consecutive',
    'aten.unique_dim', 'aten.masked_select', 'aten.histc',
}


class RandomSets(InMemoryDataset):
    r"""Sets of 3-d points whose target is the sum of all coordinates (or,
    with :obj:`classes`, whether it is positive)."""
    def __init__(self, num_sets=120, seed=0, classes=False):
        super().__init__(None, log=False)
        gen = torch.Generator().manual_seed(seed)
        data_list = []
        for _ in range(num_sets):
            n = int(torch.randint(1, 6, (1, ), generator=gen))
            x = torch.randn(n, 3, generator=gen)
            y = (x.sum() > 0).long() if classes else x.sum()
            data_list.append(Data(x=x, y=y.view(1), tag=x[:, :1] * 2))
        self.data, self.slices = self.collate(data_list)


class NoSync(TorchDispatchMode):
    r"""Fails on any operation that would synchronise a GPU."""
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func.overloadpacket)
        if name in SYNCING:
            raise AssertionError(f'{func} reads device values on the host')
        if name == 'aten.repeat_interleave' and \
                kwargs.get('output_size') is None:
            raise AssertionError(f'{func} without output_size syncs')
        if name == 'aten.index' and any(
                t is not None and t.dtype == torch.bool for t in args[1]):
            raise AssertionError(f'{func} with a boolean mask syncs')
        return func(*args, **kwargs)


class Count(TorchDispatchMode):
    r"""Counts the aten operations run, by name, and keeps the shapes of
    the tensor arguments of each call (:obj:`calls`)."""
    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        self.ops[name] += 1
        self.calls.append((name, [tuple(a.shape) for a in args
                                  if isinstance(a, torch.Tensor)]))
        return func(*args, **(kwargs or {}))


#: The hooks a module takes, by the method that registers them.
HOOKS = {
    'forward_pre': 'register_forward_pre_hook',
    'forward': 'register_forward_hook',
    'full_backward_pre': 'register_full_backward_pre_hook',
    'full_backward': 'register_full_backward_hook',
}

#: The same hooks on every module, by the function that registers them.
GLOBAL_HOOKS = {
    'forward_pre': 'register_module_forward_pre_hook',
    'forward': 'register_module_forward_hook',
    'full_backward_pre': 'register_module_full_backward_pre_hook',
    'full_backward': 'register_module_full_backward_hook',
}


def _halved(values):
    return tuple(v * 0.5 if isinstance(v, torch.Tensor) else v
                 for v in values)


def add_hook(module, kind, calls):
    r"""Registers a hook of :obj:`kind` (a key of :data:`HOOKS`) on
    :obj:`module` that counts its calls in :obj:`calls` (a
    :class:`collections.Counter`) and halves the tensors it sees (inputs,
    output or gradients), so that a path that skips it gives other values
    as well as other counts."""
    def hook(module, *args):
        calls.update([kind])
        if kind == 'forward':
            return 0.5 * args[1]
        return _halved(args[0])
    getattr(module, HOOKS[kind])(hook)


def replace_forward(module, calls):
    r"""Replaces :obj:`module.forward` on the instance, as offloading and
    adapter tools do, by one that counts its calls in :obj:`calls` and
    halves the output."""
    original = module.forward

    def forward(*args, **kwargs):
        calls.update(['forward'])
        return 0.5 * original(*args, **kwargs)

    module.forward = forward


def training_step(model, forward, x, batch, train=True, seed=2):
    r"""One step of :obj:`forward(x, batch)` (:obj:`model` in training or
    eval mode), with the random stream at :obj:`seed` (the same dropout
    masks in every call): the output, the gradients of :obj:`x` and of every
    named parameter of :obj:`model` for the loss :math:`\sum out^2`, and
    :obj:`model`'s buffers after the step (running statistics)."""
    model.train(train)
    x = x.detach().clone().requires_grad_()
    torch.manual_seed(seed)
    out = forward(x, batch)
    out.square().sum().backward()
    return dict(out=out.detach(), x=x.grad,
                grads={n: p.grad for n, p in model.named_parameters()},
                buffers={n: b.clone() for n, b in model.named_buffers()})
