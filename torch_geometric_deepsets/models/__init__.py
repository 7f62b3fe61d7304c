from torch_geometric_deepsets.models.conditional import DeepSetsConditional
from torch_geometric_deepsets.models.equivariant import (
    DeepSetsConditionalEquivariant,
    DeepSetsEquivariant,
)
from torch_geometric_deepsets.models.invariant import DeepSetsInvariant

__all__ = ['DeepSetsInvariant', 'DeepSetsEquivariant', 'DeepSetsConditional',
           'DeepSetsConditionalEquivariant']
from torch_geometric_deepsets.models.pointcloud import DeepSetsPointCloud

__all__ += ['DeepSetsPointCloud']
from torch_geometric_deepsets.models.deepsets_pp import (  # noqa: E402
    DeepSetsPlusPlus,
    EquivariantResidualBlock,
)
from torch_geometric_deepsets.models.janossy import (  # noqa: E402
    JanossyPiSGD,
    JanossyPooling,
)

__all__ += ['DeepSetsPlusPlus', 'EquivariantResidualBlock', 'JanossyPooling',
            'JanossyPiSGD']
