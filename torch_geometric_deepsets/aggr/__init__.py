r"""Aggregations of later work on sets, usable wherever PyG takes
:obj:`aggr=`."""
from torch_geometric_deepsets.aggr.fspool import FSPool

__all__ = ['FSPool']
