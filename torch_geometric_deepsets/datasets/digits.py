r"""Handwritten-digit images, the elements of the image digit-sum and the
set anomaly datasets: scikit-learn's bundled 8x8 digits (no download) or
MNIST read from a local copy."""
import gzip
import os.path as osp
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

SOURCES = ('sklearn', 'mnist')

# File names of the MNIST distribution, as torchvision stores them.
_MNIST_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
# Fraction and seed of the fixed, class-stratified split of the 1,797
# scikit-learn digits; fixed so no set seed can leak test images into
# training.
SKLEARN_TEST_FRACTION = 0.3
_SKLEARN_SPLIT_SEED = 0


def _sklearn_digits(split: str) -> Tuple[Tensor, Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - sklearn is installed here
        raise ImportError(
            "source='sklearn' needs scikit-learn, which ships the 8x8 digits "
            "(pip install 'torch_geometric_deepsets[examples]')") from e
    digits = load_digits()
    images = digits.images.reshape(len(digits.images), -1) / 16.0
    labels = digits.target
    rng = np.random.default_rng(_SKLEARN_SPLIT_SEED)
    is_test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        is_test[members[:round(SKLEARN_TEST_FRACTION * len(members))]] = True
    keep = is_test if split == 'test' else ~is_test
    return (torch.from_numpy(images[keep]).float(),
            torch.from_numpy(labels[keep]).long())


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"'{path}' is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(
        int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"'{path}' is truncated: its header announces "
                         f"{shape} but it holds {body.size} bytes")
    return body.reshape(shape)


def _find_mnist_file(root: str, name: str) -> str:
    candidates = [
        osp.join(root, *parts) for parts in [
            ('MNIST', 'raw', name),
            ('MNIST', 'raw', name + '.gz'),
            ('raw', name),
            ('raw', name + '.gz'),
            (name, ),
            (name + '.gz', ),
        ]
    ]
    for path in candidates:
        if osp.isfile(path):
            return path
    raise FileNotFoundError(
        f"'mnist_root' has no '{name}': looked for {candidates}. Point it at "
        f"a torchvision MNIST root (the folder holding MNIST/raw/); nothing "
        f"is downloaded")


def _mnist_digits(root: str, split: str) -> Tuple[Tensor, Tensor]:
    image_name, label_name = _MNIST_FILES[split]
    images = _read_idx(_find_mnist_file(root, image_name))
    labels = _read_idx(_find_mnist_file(root, label_name))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"MNIST files in '{root}' disagree: images "
                         f"{images.shape}, labels {labels.shape}")
    images = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def check_source(source: str) -> str:
    r"""Returns :obj:`source` if it names a digit-image source."""
    if source not in SOURCES:
        raise ValueError(f"'source' must be one of {SOURCES} "
                         f"(got {source!r})")
    return source


def source_params(source: str, mnist_root: Optional[str]) -> Dict[str, Any]:
    r"""The parameters that identify a dataset's images (for its cache
    key): the source and, where given, the absolute MNIST root."""
    params: Dict[str, Any] = {'source': source}
    if mnist_root is not None:
        params['mnist_root'] = osp.abspath(str(mnist_root))
    return params


def load_digit_images(
    split: str = 'train',
    source: str = 'sklearn',
    mnist_root: Optional[str] = None,
) -> Tuple[Tensor, Tensor]:
    r"""Handwritten digits as flattened images with values in
    :math:`[0, 1]` and their labels.

    :obj:`source="sklearn"` gives scikit-learn's bundled 8x8 digits (64
    pixels, 1,797 images) under a fixed class-stratified 70/30 train/test
    split; :obj:`source="mnist"` reads MNIST's 28x28 images (784 pixels)
    from the IDX files under :obj:`mnist_root` (torchvision's layout
    :obj:`mnist_root/MNIST/raw/`, gzipped or not) and never downloads.

    Args:
        split (str, optional): :obj:`"train"` or :obj:`"test"`.
            (default: :obj:`"train"`)
        source (str, optional): :obj:`"sklearn"` or :obj:`"mnist"`.
            (default: :obj:`"sklearn"`)
        mnist_root (str, optional): The local MNIST root; required for
            :obj:`source="mnist"`. (default: :obj:`None`)

    Returns:
        :obj:`(images, labels)` of shapes :math:`(N, P)` and :math:`(N)`.
    """
    if split not in _MNIST_FILES:
        raise ValueError(f"'split' must be 'train' or 'test' (got {split!r})")
    if check_source(source) == 'sklearn':
        if mnist_root is not None:
            raise ValueError("'mnist_root' is only used with "
                             "source='mnist'")
        return _sklearn_digits(split)
    if mnist_root is None:
        raise ValueError("source='mnist' needs 'mnist_root', a local "
                         "torchvision MNIST root (nothing is downloaded)")
    return _mnist_digits(str(mnist_root), split)
