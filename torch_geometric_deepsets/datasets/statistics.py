r"""Sets of numbers whose target is a statistic of the set: the tasks on
which FSPool (order statistics) and Janossy pooling (pairwise statistics)
are shown to beat plain pooling."""
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from torch_geometric_deepsets.checks import check_int
from torch_geometric_deepsets.datasets.base import (
    SyntheticSetDataset,
    check_split,
)

#: The statistics, by name.
STATISTICS = ('median', 'second_largest', 'variance', 'distinct')
DEFAULT_NUM_SETS = {'train': 8192, 'test': 2048}


def set_statistic(values: np.ndarray, statistic: str) -> float:
    r"""The statistic of one set of numbers (at least two of them)."""
    if statistic == 'median':
        return float(np.median(values))
    if statistic == 'second_largest':
        return float(np.sort(values)[-2])
    if statistic == 'variance':
        return float(np.var(values, ddof=1))
    if statistic == 'distinct':
        return float(np.unique(values).size)
    raise ValueError(f"'statistic' must be one of {STATISTICS} "
                     f"(got {statistic!r})")


class SetStatistics(SyntheticSetDataset):
    r"""Sets of numbers, each with a statistic of the set as its target.

    Every set draws a size :math:`M \sim \mathcal{U}\{\mathrm{min\_size},
    \ldots, \mathrm{max\_size}\}` and :math:`M` numbers, uniform in
    :math:`[0, 1)` or, with :obj:`num_values`, uniform integers in
    :math:`\{0, \ldots, \mathrm{num\_values} - 1\}`. The statistics:

    * :obj:`"median"` (the mean of the two middle values for even
      :math:`M`) and :obj:`"second_largest"`: order statistics, where
      FSPool's sorting helps;
    * :obj:`"variance"`, the unbiased sample variance
      :math:`\frac{1}{M - 1}\sum_m (x_m - \bar{x})^2 =
      \frac{1}{M(M - 1)}\sum_{m \neq m'} \frac{(x_m - x_{m'})^2}{2}`, an
      average over pairs, which 2-ary Janossy pooling expresses exactly;
    * :obj:`"distinct"`, the number of distinct values (use
      :obj:`num_values`).

    Every set is a :class:`~torch_geometric.data.Data` with :obj:`x` the
    numbers as a :obj:`float` tensor of shape :math:`(M, 1)` and :obj:`y`
    the statistic of shape :math:`(1)`.

    Args:
        root (str): Root directory of the generated files.
        statistic (str): One of :obj:`"median"`, :obj:`"second_largest"`,
            :obj:`"variance"`, :obj:`"distinct"`.
        split (str, optional): :obj:`"train"` or :obj:`"test"`.
            (default: :obj:`"train"`)
        num_sets (int, optional): Number of sets. (default: :obj:`8192` for
            :obj:`"train"`, :obj:`2048` for :obj:`"test"`)
        min_size (int, optional): Smallest set, at least 2.
            (default: :obj:`5`)
        max_size (int, optional): Largest set. (default: :obj:`20`)
        num_values (int, optional): Draw integers below it instead of reals.
            (default: :obj:`None`)
        seed (int, optional): Seed of the generator. (default: :obj:`0`)
        transform (callable, optional): Applied on access.
            (default: :obj:`None`)
        pre_transform (callable, optional): Applied before saving.
            (default: :obj:`None`)
        force_reload (bool, optional): Regenerate. (default: :obj:`False`)
    """
    def __init__(
        self,
        root: str,
        statistic: str,
        split: str = 'train',
        num_sets: Optional[int] = None,
        min_size: int = 5,
        max_size: int = 20,
        num_values: Optional[int] = None,
        seed: int = 0,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
    ) -> None:
        if statistic not in STATISTICS:
            raise ValueError(f"'statistic' must be one of {STATISTICS} "
                             f"(got {statistic!r})")
        self.statistic = statistic
        default_num = DEFAULT_NUM_SETS[check_split(split)]
        self.num_sets = check_int('num_sets', default_num if num_sets is None
                                  else num_sets, 1)
        self.min_size = check_int('min_size', min_size, 2)
        self.max_size = check_int('max_size', max_size, self.min_size)
        self.num_values = None if num_values is None else check_int(
            'num_values', num_values, 2)
        super().__init__(root, split, seed, transform, pre_transform,
                         force_reload)

    def params(self) -> Dict[str, Any]:
        return {
            'statistic': self.statistic,
            'num_sets': self.num_sets,
            'min_size': self.min_size,
            'max_size': self.max_size,
            'num_values': self.num_values,
        }

    def generate(
        self, rng: np.random.Generator
    ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], Tensor]:
        sizes = rng.integers(self.min_size, self.max_size + 1, self.num_sets)
        total = int(sizes.sum())
        if self.num_values is None:
            values = rng.random(total)
        else:
            values = rng.integers(0, self.num_values, total).astype(float)
        sets = np.split(values, np.cumsum(sizes)[:-1])
        targets = [set_statistic(v, self.statistic) for v in sets]
        return ({
            'x': torch.from_numpy(values).float().view(-1, 1)
        }, {
            'y': torch.tensor(targets, dtype=torch.float)
        }, torch.from_numpy(sizes))
