r"""Aggregations of later work on sets, usable wherever PyG takes
:obj:`aggr=`, and what aggregations declare they support
(:mod:`~torch_geometric_deepsets.aggr.capabilities`)."""
from torch_geometric_deepsets.aggr.capabilities import (
    declare_not_streamable,
    declare_streaming,
)
from torch_geometric_deepsets.aggr.fspool import FSPool

__all__ = ['FSPool', 'declare_streaming', 'declare_not_streamable']
