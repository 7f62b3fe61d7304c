r"""Set anomaly detection (Section 4.3 of the `"Deep Sets"
<https://arxiv.org/abs/1703.06114>`_ paper) with digit images in place of
CelebA faces."""
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from torch_geometric_deepsets.checks import check_int
from torch_geometric_deepsets.datasets.base import (
    SyntheticSetDataset,
    check_split,
)
from torch_geometric_deepsets.datasets.digits import (
    check_source,
    load_digit_images,
    source_params,
)

DEFAULT_NUM_SETS = {'train': 40_000, 'test': 2_000}


class SetAnomaly(SyntheticSetDataset):
    r"""Sets of :obj:`set_size` handwritten-digit images of which all but one
    show the same digit; the task is to find the odd one out.

    In the paper's version, 15 of 16 CelebA faces share two attributes and
    one has neither, and a permutation-equivariant model scores every element
    with a softmax over the set. Here the majority digit :math:`a` is drawn
    uniformly, the odd digit uniformly from the other nine, the
    :obj:`set_size - 1` majority images without replacement from the images
    of :math:`a` in the split (see :func:`load_digit_images`), and the odd
    image's position uniformly. Chance accuracy is :math:`1 /
    \mathrm{set\_size}` (6.25 % for 16).

    Every set is a :class:`~torch_geometric.data.Data` with :obj:`x` the
    flattened images in :math:`[0, 1]` of shape :math:`(M, P)`, :obj:`y` a
    :obj:`long` indicator of the odd element of shape :math:`(M)`, and
    :obj:`digit` the labels of shape :math:`(M)`.

    Args:
        root (str): Root directory of the generated files.
        split (str, optional): :obj:`"train"` or :obj:`"test"`.
            (default: :obj:`"train"`)
        num_sets (int, optional): Number of sets. (default: :obj:`40000` for
            :obj:`"train"`, :obj:`2000` for :obj:`"test"`)
        set_size (int, optional): Elements per set, at least 3.
            (default: :obj:`16`)
        seed (int, optional): Seed of the generator. (default: :obj:`0`)
        source (str, optional): :obj:`"sklearn"` or :obj:`"mnist"`.
            (default: :obj:`"sklearn"`)
        mnist_root (str, optional): Local MNIST root for
            :obj:`source="mnist"`. (default: :obj:`None`)
        transform (callable, optional): Applied on access.
            (default: :obj:`None`)
        pre_transform (callable, optional): Applied before saving.
            (default: :obj:`None`)
        force_reload (bool, optional): Regenerate. (default: :obj:`False`)
    """
    def __init__(
        self,
        root: str,
        split: str = 'train',
        num_sets: Optional[int] = None,
        set_size: int = 16,
        seed: int = 0,
        source: str = 'sklearn',
        mnist_root: Optional[str] = None,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
    ) -> None:
        default_num = DEFAULT_NUM_SETS[check_split(split)]
        self.num_sets = check_int('num_sets', default_num if num_sets is None
                                  else num_sets, 1)
        # With two elements neither is "the odd one".
        self.set_size = check_int('set_size', set_size, 3)
        self.source = check_source(source)
        self.mnist_root = mnist_root
        super().__init__(root, split, seed, transform, pre_transform,
                         force_reload)

    def params(self) -> Dict[str, Any]:
        return {
            'num_sets': self.num_sets,
            'set_size': self.set_size,
            **source_params(self.source, self.mnist_root),
        }

    def generate(
        self, rng: np.random.Generator
    ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], Tensor]:
        images, labels = load_digit_images(self.split, self.source,
                                           self.mnist_root)
        by_digit = [np.flatnonzero(labels.numpy() == d) for d in range(10)]
        smallest = min(len(members) for members in by_digit)
        if smallest < self.set_size - 1:
            raise ValueError(f"'set_size' {self.set_size} needs "
                             f"{self.set_size - 1} distinct images of a "
                             f"digit, but the {self.split} split has only "
                             f"{smallest} of some digit")
        m = self.set_size
        picks = np.empty((self.num_sets, m), dtype=np.int64)
        odd = np.zeros((self.num_sets, m), dtype=np.int64)
        for i in range(self.num_sets):
            common = int(rng.integers(10))
            other = (common + int(rng.integers(1, 10))) % 10
            row = rng.choice(by_digit[common], m - 1, replace=False)
            position = int(rng.integers(m))
            picks[i] = np.insert(row, position, rng.choice(by_digit[other]))
            odd[i, position] = 1
        picks_t = torch.from_numpy(picks.reshape(-1))
        return ({
            'x': images[picks_t],
            'y': torch.from_numpy(odd.reshape(-1)),
            'digit': labels[picks_t],
        }, {}, torch.full((self.num_sets, ), m, dtype=torch.long))
