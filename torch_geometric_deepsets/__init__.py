r"""Deep Sets (Zaheer et al., NeurIPS 2017) for PyTorch Geometric: sets are
edgeless graphs, and PyG's :obj:`batch` vector says which rows form a set."""
from torch_geometric_deepsets import testing
from torch_geometric_deepsets.dense import (
    DenseSets,
    WeightedDenseSets,
    from_dense,
    to_dense,
)
from torch_geometric_deepsets.layers import PermutationEquivariantLayer
from torch_geometric_deepsets.models import (
    DeepSetsConditional,
    DeepSetsConditionalEquivariant,
    DeepSetsEquivariant,
    DeepSetsInvariant,
)
from torch_geometric_deepsets.pool import pool, resolve_aggr

__version__ = '0.1.0'

__all__ = [
    'pool',
    'resolve_aggr',
    'PermutationEquivariantLayer',
    'DeepSetsInvariant',
    'DeepSetsEquivariant',
    'DeepSetsConditional',
    'DeepSetsConditionalEquivariant',
    'from_dense',
    'DenseSets',
    'WeightedDenseSets',
    'to_dense',
    'testing',
    '__version__',
]
from torch_geometric_deepsets.models import DeepSetsPointCloud  # noqa: E402
from torch_geometric_deepsets.transforms import (  # noqa: E402
    RandomAxisScale,
    ToSet,
)

__all__ += ['DeepSetsPointCloud', 'ToSet', 'RandomAxisScale']

# Generated datasets of the paper's experiments (their training scripts live
# in examples/, outside the package).
from torch_geometric_deepsets import datasets  # noqa: E402

__all__ += ['datasets']

# Variants from later work: DeepSets++, FSPool, Janossy pooling.
from torch_geometric_deepsets.aggr import FSPool  # noqa: E402
from torch_geometric_deepsets.models import (  # noqa: E402
    DeepSetsPlusPlus,
    EquivariantResidualBlock,
    JanossyPiSGD,
    JanossyPooling,
)

__all__ += ['FSPool', 'DeepSetsPlusPlus', 'EquivariantResidualBlock',
            'JanossyPooling', 'JanossyPiSGD']

# Sets bigger than memory: streamed pooling with exact gradients.
from torch_geometric_deepsets.stream import (  # noqa: E402
    Chunks,
    SetAccumulator,
    stream_encode,
)

__all__ += ['Chunks', 'SetAccumulator', 'stream_encode']
