r"""Population statistic estimation (Section 4.1.2 of the `"Deep Sets"
<https://arxiv.org/abs/1703.06114>`_ paper): every set is a sample from a
Gaussian, and the target is a statistic of that Gaussian."""
import math
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from torch_geometric_deepsets.checks import check_int
from torch_geometric_deepsets.datasets.base import (
    SyntheticSetDataset,
    check_split,
)

TASKS = ('rotation', 'correlation', 'rank1', 'random')
DEFAULT_NUM_SETS = {'train': 4096, 'test': 512}
#: Eigenvalues of the rotated 2-D covariance of the :obj:`"rotation"` task.
ROTATION_EIGENVALUES = (1.0, 0.1)
#: Range of the correlation :math:`\alpha` of the :obj:`"correlation"` task
#: (the mutual information diverges at :math:`|\alpha| = 1`).
MAX_CORRELATION = 0.95
#: Range of the spike :math:`\lambda` of the :obj:`"rank1"` task.
MAX_SPIKE = 10.0


def gaussian_entropy(variance: float) -> float:
    r"""Entropy :math:`\frac{1}{2}\log(2\pi e\sigma^2)` of a 1-D Gaussian."""
    return 0.5 * math.log(2 * math.pi * math.e * variance)


def gaussian_mutual_information(cov: np.ndarray) -> float:
    r"""Mutual information between the first and the second half of the
    coordinates of a Gaussian with covariance :obj:`cov`,
    :math:`\frac{1}{2}(\log|\Sigma_{11}| + \log|\Sigma_{22}| -
    \log|\Sigma|)`."""
    h = cov.shape[0] // 2
    logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    return 0.5 * float(
        logdet(cov[:h, :h]) + logdet(cov[h:, h:]) - logdet(cov))


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def draw_covariance(rng: np.random.Generator, task: str,
                    dim: int) -> Tuple[np.ndarray, float]:
    r"""One covariance of :obj:`task` and its target statistic."""
    if task == 'rotation':
        angle = rng.uniform(0.0, math.pi)
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, -s], [s, c]])
        cov = rot @ np.diag(ROTATION_EIGENVALUES) @ rot.T
        return cov, gaussian_entropy(cov[0, 0])
    h = dim // 2
    if task == 'correlation':
        alpha = rng.uniform(-MAX_CORRELATION, MAX_CORRELATION)
        block = _random_spd(rng, h)
        cov = np.block([[block, alpha * block], [alpha * block, block]])
    elif task == 'rank1':
        v = rng.standard_normal(dim)
        v /= np.linalg.norm(v)
        cov = np.eye(dim) + rng.uniform(0.0, MAX_SPIKE) * np.outer(v, v)
    else:
        cov = _random_spd(rng, dim)
    return cov, gaussian_mutual_information(cov)


class PopulationStatistics(SyntheticSetDataset):
    r"""Sets of points sampled from a zero-mean Gaussian whose target is a
    statistic of the Gaussian (the population statistic experiments of the
    `"Deep Sets" <https://arxiv.org/abs/1703.06114>`_ paper). Each set draws
    a covariance :math:`\Sigma`, a size :math:`M \sim
    \mathcal{U}\{\mathrm{min\_size}, \ldots, \mathrm{max\_size}\}` and
    :math:`M` points :math:`\mathbf{x}_m \sim \mathcal{N}(\mathbf{0},
    \Sigma)`. The tasks:

    * :obj:`"rotation"` (2-D): :math:`\Sigma = R(\alpha)\,
      \mathrm{diag}(1, 0.1)\, R(\alpha)^\top`, :math:`\alpha \sim
      \mathcal{U}[0, \pi]`; the target is the entropy of the first
      coordinate,

      .. math::
          H(x_1) = \tfrac{1}{2} \log(2 \pi e\, \Sigma_{11}).

    * :obj:`"correlation"`: :math:`\Sigma = \begin{bmatrix} S & \alpha S
      \\ \alpha S & S \end{bmatrix}` with a random positive-definite
      :math:`S` and :math:`\alpha \sim \mathcal{U}[-0.95, 0.95]`;
    * :obj:`"rank1"`: :math:`\Sigma = I + \lambda \mathbf{v}\mathbf{v}^\top`
      with a uniform unit vector :math:`\mathbf{v}` and :math:`\lambda \sim
      \mathcal{U}[0, 10]`;
    * :obj:`"random"`: a random positive-definite :math:`\Sigma = A
      A^\top / D + 0.1 I`, :math:`A_{ij} \sim \mathcal{N}(0, 1)`;

    the last three with the target the mutual information between the two
    halves of the coordinates,

    .. math::
        I(\mathbf{x}_{1:D/2}; \mathbf{x}_{D/2+1:D}) = \tfrac{1}{2} \left(
        \log|\Sigma_{11}| + \log|\Sigma_{22}| - \log|\Sigma| \right).

    The paper's exact eigenvalues and ranges are not stated; the ones here
    are documented in the module constants. Every set is a
    :class:`~torch_geometric.data.Data` with :obj:`x` of shape :math:`(M,
    D)` and :obj:`y` of shape :math:`(1)`.

    Args:
        root (str): Root directory of the generated files.
        task (str, optional): One of :obj:`"rotation"`,
            :obj:`"correlation"`, :obj:`"rank1"`, :obj:`"random"`.
            (default: :obj:`"rotation"`)
        split (str, optional): :obj:`"train"` or :obj:`"test"`.
            (default: :obj:`"train"`)
        num_sets (int, optional): Number of sets. (default: :obj:`4096` for
            :obj:`"train"`, :obj:`512` for :obj:`"test"`)
        min_size (int, optional): Smallest set. (default: :obj:`300`)
        max_size (int, optional): Largest set. (default: :obj:`500`)
        dim (int, optional): Dimension :math:`D` of the mutual-information
            tasks, even (the paper uses 32); :obj:`"rotation"` is 2-D.
            (default: :obj:`32`)
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
        task: str = 'rotation',
        split: str = 'train',
        num_sets: Optional[int] = None,
        min_size: int = 300,
        max_size: int = 500,
        dim: int = 32,
        seed: int = 0,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"'task' must be one of {TASKS} (got {task!r})")
        default_num = DEFAULT_NUM_SETS[check_split(split)]
        self.task = task
        self.num_sets = check_int('num_sets', default_num if num_sets is None
                                  else num_sets, 1)
        self.min_size = check_int('min_size', min_size, 1)
        self.max_size = check_int('max_size', max_size, self.min_size)
        if task == 'rotation':
            self.dim = 2
        else:
            self.dim = check_int('dim', dim, 2)
            if self.dim % 2:
                raise ValueError(f"'dim' must be even, two halves of the "
                                 f"coordinates (got {dim})")
        super().__init__(root, split, seed, transform, pre_transform,
                         force_reload)

    def params(self) -> Dict[str, Any]:
        return {
            'task': self.task,
            'num_sets': self.num_sets,
            'min_size': self.min_size,
            'max_size': self.max_size,
            'dim': self.dim,
        }

    def generate(
        self, rng: np.random.Generator
    ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], Tensor]:
        sizes = rng.integers(self.min_size, self.max_size + 1, self.num_sets)
        points, targets = [], np.empty(self.num_sets)
        for i, size in enumerate(sizes):
            cov, targets[i] = draw_covariance(rng, self.task, self.dim)
            chol = np.linalg.cholesky(cov)
            points.append(rng.standard_normal((size, self.dim)) @ chol.T)
        x = torch.from_numpy(np.concatenate(points)).float()
        return ({
            'x': x
        }, {
            'y': torch.from_numpy(targets).float()
        }, torch.from_numpy(sizes))
