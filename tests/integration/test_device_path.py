r"""The device path (what GPU tensors and compiled graphs run) never reads a
value back to the host, and dispatches no more operations per training step
than PyG's equivalent.

Both run on ``meta`` tensors: they have no values, are not on the CPU, and
so take the device path unchanged, while a :class:`TorchDispatchMode` sees
every aten operation that a GPU would launch.
"""
import pytest
import torch

import torch_geometric.typing
from tests.helpers import Count, NoSync
from torch_geometric.index import ptr2index
from torch_geometric.nn import MLP
from torch_geometric.nn.aggr import DeepSetsAggregation
from torch_geometric.utils import scatter
from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsEquivariant,
    DeepSetsInvariant,
    DeepSetsPointCloud,
    PermutationEquivariantLayer,
)

N, B, F = 50, 6, 3
MODELS = {
    'invariant': lambda aggr: DeepSetsInvariant([F, 8, 8], [8, 2], aggr=aggr),
    'layer': lambda aggr: PermutationEquivariantLayer(F, 4, aggr=aggr),
    'layer_tied': lambda aggr: PermutationEquivariantLayer(F, 4, aggr=aggr,
                                                           tied=True),
    'equivariant': lambda aggr: DeepSetsEquivariant([F, 8, 2], aggr=aggr),
    'equivariant_readout': lambda aggr: DeepSetsEquivariant(
        [F, 8, 2], aggr=aggr, readout=aggr),
    'conditional_concat': lambda aggr: DeepSetsConditional(
        [F, 8, 8], [8, 2], context_channels=2, aggr=aggr),
    'conditional_film': lambda aggr: DeepSetsConditional(
        [F, 8, 8], [8, 2], context_channels=2, aggr=aggr, fusion='film'),
    'conditional_add': lambda aggr: DeepSetsConditional(
        [F, 8, 8], [8, 2], context_channels=2, aggr=aggr, fusion='add'),
    'point_cloud': lambda aggr: DeepSetsPointCloud(
        F, 4, hidden_channels=8, aggr=aggr, readout=aggr),
}


def meta_inputs(layout):
    x = torch.randn(N, F, device='meta')
    if layout == 'index':
        grouping = dict(dim_size=B)
        index = torch.empty(N, dtype=torch.long, device='meta')
        return x, index, grouping
    return x, None, dict(ptr=torch.empty(B + 1, dtype=torch.long,
                                         device='meta'))


@pytest.mark.parametrize('aggr', ['sum', 'mean', 'max'])
@pytest.mark.parametrize('layout', ['index', 'ptr'])
@pytest.mark.parametrize('name', list(MODELS))
def test_no_host_sync_in_forward_and_backward(name, aggr, layout):
    model = MODELS[name](aggr).to('meta')
    x, index, grouping = meta_inputs(layout)
    x.requires_grad_()
    args = (x, ) if index is None else (x, index)
    if name.startswith('conditional'):
        context = torch.randn(B, 2, device='meta', requires_grad=True)
        args = (x, context) if index is None else (x, context, index)
    with NoSync():
        out = model(*args, **grouping)
        out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_no_sync_check_catches_a_sync():
    # The mode above is what the tests rely on: it must see a host read.
    x = torch.randn(4, 2, device='meta')
    with pytest.raises(AssertionError, match='reads device values'):
        with NoSync():
            x.sum().item()
    with pytest.raises(AssertionError, match='syncs'):
        with NoSync():
            torch.repeat_interleave(torch.ones(3, dtype=torch.long,
                                               device='meta'))


PHI, RHO = [3, 32, 32, 32], [32, 32, 1]


def count_step(module, call):
    for p in module.parameters():
        p.grad = None
    with Count() as counter:
        call().sum().backward()
    return counter.ops


@pytest.mark.parametrize('aggr', ['sum', 'mean', 'max'])
@pytest.mark.parametrize('layout', ['index', 'ptr'])
def test_training_step_dispatches_no_more_ops_than_pyg(aggr, layout,
                                                       monkeypatch):
    # torch_scatter has no meta kernels; PyG then takes torch's own segment
    # reduction for ptr, one operation like torch_scatter's.
    monkeypatch.setattr(torch_geometric.typing, 'WITH_TORCH_SCATTER', False)
    x, index, grouping = meta_inputs(layout)
    kwargs = dict(grouping) if index is None else dict(grouping, index=index)
    torch.manual_seed(0)
    ours = DeepSetsInvariant(PHI, RHO, aggr=aggr).to('meta')
    phi = MLP(PHI, norm=None).to('meta')
    rho = MLP(RHO, norm=None).to('meta')
    if aggr == 'sum':
        pyg = DeepSetsAggregation(phi, rho)
        theirs = count_step(pyg, lambda: pyg(x, **kwargs))
    else:  # PyG's MLPs around PyG's scatter, which takes set ids
        batch = index if index is not None else ptr2index(
            grouping['ptr'], output_size=N)
        both = torch.nn.ModuleList([phi, rho])
        theirs = count_step(both, lambda: rho(scatter(phi(x), batch, 0, B,
                                                      aggr)))
    mine = count_step(ours, lambda: ours(x, **kwargs))
    assert sum(mine.values()) <= sum(theirs.values()), (dict(mine),
                                                        dict(theirs))
