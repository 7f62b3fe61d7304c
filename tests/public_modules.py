r"""Every public module class of the package with the recipes the
class-walking tests build it from (the compile/export matrix and the
convention tests). A public class without a recipe fails those tests."""
from typing import Callable, NamedTuple, Optional

import pytest
import torch

import torch_geometric_deepsets as T
from tests.helpers import make_batch, ptr_of
from torch_geometric.nn.aggr import SoftmaxAggregation


class Case(NamedTuple):
    build: Callable[[], torch.nn.Module]
    context: bool = False
    #: The module samples (its output for a set depends on the random
    #: stream, which the other sets of a batch move on).
    random: bool = False




F, C = 3, 2

#: One recipe or more per public module class; a class missing here fails
#: test_every_public_module_is_in_the_matrix. Aggregation families that take
#: different kernels get a case each: sum/mean (pooling before phi's last
#: layer), max (its own backward), and PyG's generic aggregations.
MATRIX = {
    T.PermutationEquivariantLayer: {
        'mean': Case(lambda: T.PermutationEquivariantLayer(F, 4, 'mean')),
        'max_tied': Case(lambda: T.PermutationEquivariantLayer(
            F, 4, 'max', tied=True)),
    },
    T.DeepSetsInvariant: {
        'sum': Case(lambda: T.DeepSetsInvariant([F, 8, 8], [8, 2])),
        'max': Case(lambda: T.DeepSetsInvariant([F, 8], [8, 2], 'max')),
        'softmax_list': Case(lambda: T.DeepSetsInvariant(
            [F, 8], [16, 2], ['mean', SoftmaxAggregation(learn=True)])),
    },
    T.DeepSetsEquivariant: {
        'readout': Case(lambda: T.DeepSetsEquivariant(
            [F, 8, 2], aggr='max', readout='sum')),
    },
    T.DeepSetsConditional: {
        'film': Case(lambda: T.DeepSetsConditional(
            [F, 8, 8], [8, 2], C, fusion='film', aggr='mean'), True),
    },
    T.DeepSetsConditionalEquivariant: {
        'concat': Case(lambda: T.DeepSetsConditionalEquivariant(
            [F, 8, 2], C), True),
    },
    T.DeepSetsPointCloud: {
        'default': Case(lambda: T.DeepSetsPointCloud(
            F, 5, hidden_channels=8, dropout=0.0)),
    },
    T.FSPool: {
        'default': Case(lambda: T.FSPool(F, 4)),
    },
    T.DeepSetsPlusPlus: {
        'readout': Case(lambda: T.DeepSetsPlusPlus(F, 8, 2, num_blocks=1,
                                                   readout='mean')),
    },
    T.EquivariantResidualBlock: {
        'default': Case(lambda: T.EquivariantResidualBlock(F)),
    },
    T.JanossyPooling: {
        'default': Case(lambda: T.JanossyPooling([F, 8], [8, 2], k=2)),
        # Its own enumeration (the combinatorial number system) and the
        # canonical sort of every set's rows.
        'combinations': Case(lambda: T.JanossyPooling(
            [F, 8, 8], [8, 2], k=3, tuples='combinations')),
    },
    T.JanossyPiSGD: {
        'k': Case(lambda: T.JanossyPiSGD([F, 8], [8, 2], k=2), random=True),
    },
}

CASES = [pytest.param(case, id=f'{cls.__name__}-{name}')
         for cls, cases in MATRIX.items() for name, case in cases.items()]
#: The first recipe of every class.
FIRST = [pytest.param(cls, next(iter(cases.values())), id=cls.__name__)
         for cls, cases in MATRIX.items()]

#: Each class built with lazy (-1) widths.
LAZY = {
    T.PermutationEquivariantLayer: lambda: T.PermutationEquivariantLayer(
        -1, 4, 'mean'),
    T.DeepSetsInvariant: lambda: T.DeepSetsInvariant([-1, 8, 8], [8, 2]),
    T.DeepSetsEquivariant: lambda: T.DeepSetsEquivariant(
        [-1, 8, 2], aggr='max', readout='sum'),
    T.DeepSetsConditional: lambda: T.DeepSetsConditional(
        [-1, 8, 8], [8, 2], -1, fusion='film', aggr='mean'),
    T.DeepSetsConditionalEquivariant:
    lambda: T.DeepSetsConditionalEquivariant([-1, 8, 2], -1),
    T.DeepSetsPointCloud: lambda: T.DeepSetsPointCloud(
        -1, 5, hidden_channels=8, dropout=0.0),
    T.FSPool: lambda: T.FSPool(-1, 4),
    T.DeepSetsPlusPlus: lambda: T.DeepSetsPlusPlus(-1, 8, 2, num_blocks=1,
                                                   readout='mean'),
    T.EquivariantResidualBlock: lambda: T.EquivariantResidualBlock(-1),
    T.JanossyPooling: lambda: T.JanossyPooling([-1, 8], [8, 2], k=2),
    T.JanossyPiSGD: lambda: T.JanossyPiSGD([-1, 8], [8, 2], k=2),
}


def public_module_classes() -> set:
    r"""The classes in :obj:`torch_geometric_deepsets.__all__` that are
    modules."""
    public = {getattr(T, name) for name in T.__all__}
    return {obj for obj in public
            if isinstance(obj, type) and issubclass(obj, torch.nn.Module)}


def set_inputs(case: Case, sizes, layout: str = 'index', seed: int = 0,
               dim_size: bool = True, generator: Optional[torch.Generator]
               = None):
    r"""Positional and keyword arguments for :obj:`case`'s module: sets of
    the given sizes (:func:`tests.helpers.make_batch`), with shuffled rows
    and ids (:obj:`"index"`) or sorted rows and :obj:`ptr`, and a context
    where the module takes one."""
    gen = generator or torch.Generator().manual_seed(seed)
    x, batch = make_batch(sizes, F, shuffle=layout == 'index', generator=gen)
    args = (x, torch.randn(len(sizes), C, generator=gen)) if case.context \
        else (x, )
    if layout == 'ptr':
        return args, dict(ptr=ptr_of(batch, len(sizes)))
    return args + (batch, ), dict(dim_size=len(sizes)) if dim_size else {}
