r"""Helpers for testing set models and pipelines: checks of permutation
symmetry for users' own models, and tiny offline stand-ins of PyG's
point-cloud datasets (as PyG's own :class:`~torch_geometric.datasets.
FakeDataset`)."""
from torch_geometric_deepsets.testing.asserts import (
    RELATIVE_TOLERANCES,
    TOLERANCES,
    assert_permutation_equivariant,
    assert_permutation_invariant,
    permutation_error,
    random_set_permutation,
    relative_error,
)
from torch_geometric_deepsets.testing.point_clouds import (
    write_geometric_shapes,
    write_modelnet,
    write_shapenet,
)

__all__ = [
    'assert_permutation_invariant',
    'assert_permutation_equivariant',
    'permutation_error',
    'random_set_permutation',
    'TOLERANCES',
    'relative_error',
    'RELATIVE_TOLERANCES',
    'write_modelnet',
    'write_shapenet',
    'write_geometric_shapes',
]
