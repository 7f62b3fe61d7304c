r"""Aggregations of later work on sets, usable wherever PyG takes
:obj:`aggr=`, and what aggregations declare they support
(:mod:`~torch_geometric_deepsets.capabilities`). Importing this package
declares the weighted forms of PyG's aggregations
(:mod:`~torch_geometric_deepsets.aggr.weighted`)."""
from torch_geometric_deepsets.aggr import weighted  # noqa: F401
from torch_geometric_deepsets.aggr.fspool import FSPool
from torch_geometric_deepsets.capabilities import (
    declare_not_streamable,
    declare_not_weighted,
    declare_streaming,
    declare_weighted,
)

__all__ = ['FSPool', 'declare_streaming', 'declare_not_streamable',
           'declare_weighted', 'declare_not_weighted']
