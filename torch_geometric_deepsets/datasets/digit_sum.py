r"""The digit-sum datasets of the `"Deep Sets"
<https://arxiv.org/abs/1703.06114>`_ paper (Section 4.1.1): the target of a
set of digits is their sum."""
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from torch_geometric_deepsets.checks import check_int
from torch_geometric_deepsets.datasets.base import (
    SyntheticSetDataset,
    check_sizes,
    check_split,
    cycle_sizes,
)
from torch_geometric_deepsets.datasets.digits import (
    check_source,
    load_digit_images,
    source_params,
)

#: Defaults per split: the paper trains on sets of at most 10 digits and
#: tests on sizes 5..100 (text) or 5..50 (images).
TEXT_DEFAULTS = {
    'train': (100_000, list(range(1, 11))),
    'test': (20_000, list(range(5, 101, 5))),
}
IMAGE_DEFAULTS = {
    'train': (20_000, list(range(1, 11))),
    'test': (5_000, list(range(5, 51, 5))),
}


def _digit_sets(rng: np.random.Generator, num_sets: int, sizes: Sequence[int],
                num_choices: int) -> Tuple[np.ndarray, np.ndarray]:
    r"""Set sizes spread evenly over :obj:`sizes` and, for every element,
    a uniform draw from :obj:`range(num_choices)`."""
    set_sizes = cycle_sizes(list(sizes), num_sets)
    draws = rng.integers(0, num_choices, int(set_sizes.sum()))
    return set_sizes, draws


def _segment_sum(values: np.ndarray, set_sizes: np.ndarray) -> np.ndarray:
    starts = np.concatenate([[0], np.cumsum(set_sizes)[:-1]])
    return np.add.reduceat(values, starts)


class DigitSumText(SyntheticSetDataset):
    r"""Sets of digits given as tokens, whose target is their sum (the text
    digit-sum task of the `"Deep Sets" <https://arxiv.org/abs/1703.06114>`_
    paper):

    .. math::
        y(\{d_1, \ldots, d_M\}) = \sum_{m=1}^{M} d_m, \qquad
        d_m \sim \mathcal{U}\{0, \ldots, 9\}.

    Every set is a :class:`~torch_geometric.data.Data` with :obj:`x` the
    digits as a :obj:`long` tensor of shape :math:`(M, 1)` (token ids for an
    embedding) and :obj:`y` the sum as a :obj:`float` tensor of shape
    :math:`(1)`. The sets are spread evenly over :obj:`sizes` (set :math:`i`
    has :obj:`sizes[i % len(sizes)]` digits) and drawn from a generator
    seeded with :obj:`(seed, split)`.

    Args:
        root (str): Root directory of the generated files.
        split (str, optional): :obj:`"train"` or :obj:`"test"`.
            (default: :obj:`"train"`)
        num_sets (int, optional): Number of sets. (default: :obj:`100000` for
            :obj:`"train"`, :obj:`20000` for :obj:`"test"`)
        sizes (List[int], optional): The set sizes. (default: :obj:`1..10`
            for :obj:`"train"`, :obj:`5, 10, ..., 100` for :obj:`"test"`)
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
        split: str = 'train',
        num_sets: Optional[int] = None,
        sizes: Optional[Sequence[int]] = None,
        seed: int = 0,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
    ) -> None:
        default_num, default_sizes = TEXT_DEFAULTS[check_split(split)]
        self.num_sets = check_int('num_sets', default_num if num_sets is None
                                  else num_sets, 1)
        self.sizes = check_sizes('sizes', default_sizes if sizes is None else
                                 sizes)
        super().__init__(root, split, seed, transform, pre_transform,
                         force_reload)

    def params(self) -> Dict[str, Any]:
        return {'num_sets': self.num_sets, 'sizes': self.sizes}

    def generate(
        self, rng: np.random.Generator
    ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], Tensor]:
        set_sizes, digits = _digit_sets(rng, self.num_sets, self.sizes, 10)
        sums = _segment_sum(digits, set_sizes)
        return ({
            'x': torch.from_numpy(digits).long().view(-1, 1)
        }, {
            'y': torch.from_numpy(sums).float()
        }, torch.from_numpy(set_sizes))


class DigitSumImages(SyntheticSetDataset):
    r"""Sets of handwritten-digit images, whose target is the sum of the
    digits they show (the image digit-sum task of the `"Deep Sets"
    <https://arxiv.org/abs/1703.06114>`_ paper, which used MNIST).

    The elements are drawn uniformly, with replacement, from the images of
    the split (see :func:`load_digit_images`: scikit-learn's bundled 8x8
    digits by default, or MNIST from a local copy), so train and test sets
    never share an image. Every set is a :class:`~torch_geometric.data.Data`
    with :obj:`x` the flattened images in :math:`[0, 1]` of shape
    :math:`(M, P)` (:math:`P = 64` or :math:`784`), :obj:`digit` their
    labels of shape :math:`(M)` (for diagnostics only) and :obj:`y` the sum
    of shape :math:`(1)`.

    Args:
        root (str): Root directory of the generated files.
        split (str, optional): :obj:`"train"` or :obj:`"test"`.
            (default: :obj:`"train"`)
        num_sets (int, optional): Number of sets. (default: :obj:`20000` for
            :obj:`"train"`, :obj:`5000` for :obj:`"test"`)
        sizes (List[int], optional): The set sizes. (default: :obj:`1..10`
            for :obj:`"train"`, :obj:`5, 10, ..., 50` for :obj:`"test"`)
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
        sizes: Optional[Sequence[int]] = None,
        seed: int = 0,
        source: str = 'sklearn',
        mnist_root: Optional[str] = None,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
    ) -> None:
        default_num, default_sizes = IMAGE_DEFAULTS[check_split(split)]
        self.num_sets = check_int('num_sets', default_num if num_sets is None
                                  else num_sets, 1)
        self.sizes = check_sizes('sizes', default_sizes if sizes is None else
                                 sizes)
        self.source = check_source(source)
        self.mnist_root = mnist_root
        super().__init__(root, split, seed, transform, pre_transform,
                         force_reload)

    def params(self) -> Dict[str, Any]:
        return {
            'num_sets': self.num_sets,
            'sizes': self.sizes,
            **source_params(self.source, self.mnist_root),
        }

    def generate(
        self, rng: np.random.Generator
    ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], Tensor]:
        images, labels = load_digit_images(self.split, self.source,
                                           self.mnist_root)
        set_sizes, picks = _digit_sets(rng, self.num_sets, self.sizes,
                                       len(labels))
        picks_t = torch.from_numpy(picks)
        digits = labels[picks_t]
        sums = _segment_sum(digits.numpy(), set_sizes)
        return ({
            'x': images[picks_t],
            'digit': digits
        }, {
            'y': torch.from_numpy(sums).float()
        }, torch.from_numpy(set_sizes))
