r"""Generated set datasets of the `"Deep Sets"
<https://arxiv.org/abs/1703.06114>`_ experiments: every set is an edgeless
:class:`~torch_geometric.data.Data`, generated deterministically from a
seed, with nothing to download."""
from torch_geometric_deepsets.datasets.anomaly import SetAnomaly
from torch_geometric_deepsets.datasets.base import SyntheticSetDataset
from torch_geometric_deepsets.datasets.digit_sum import (
    DigitSumImages,
    DigitSumText,
)
from torch_geometric_deepsets.datasets.digits import load_digit_images
from torch_geometric_deepsets.datasets.population import PopulationStatistics
from torch_geometric_deepsets.datasets.statistics import SetStatistics

__all__ = [
    'SyntheticSetDataset',
    'load_digit_images',
    'DigitSumText',
    'DigitSumImages',
    'PopulationStatistics',
    'SetAnomaly',
    'SetStatistics',
]
