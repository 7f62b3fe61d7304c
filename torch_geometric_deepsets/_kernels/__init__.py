r"""The reductions behind sum, mean, max and min pooling in every layer and
model of the package, and the pooled affine layer. They give PyG's values
(0 for an empty set) and are organised by concept:

* :mod:`.paths`: which code path runs (host, device, compiled CPU graph);
* :mod:`.ids`: set ids, set sizes and pooled shapes;
* :mod:`.sums`: accurate sums of long sets;
* :mod:`.extremes`: max/min pooling and the split of tied gradients;
* :mod:`.affine`: pooling moved in front of an affine layer;
* :mod:`.custom_ops`: the operators compiled CPU graphs call;
* :mod:`.dispatch`: the entry points below, which pick the kernel.
"""
from torch_geometric_deepsets._kernels.dispatch import (
    pool_affine,
    segment_extreme,
    segment_pool,
)
from torch_geometric_deepsets._kernels.ids import (
    along,
    ptr_to_index,
    set_counts,
)
from torch_geometric_deepsets._kernels.sums import segment_sum

__all__ = ['segment_pool', 'segment_sum', 'segment_extreme', 'pool_affine',
           'ptr_to_index', 'set_counts', 'along']
