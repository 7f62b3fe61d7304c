r"""A tiny offline copy of MNIST in torchvision's raw layout (the point-cloud
stand-ins are public: :mod:`torch_geometric_deepsets.testing`)."""
import gzip
import struct

import numpy as np


def write_idx(path, array, compress=False):
    r"""An array of bytes in the IDX format of the MNIST files."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b''.join(
        struct.pack('>I', s) for s in array.shape)
    opener = gzip.open if compress else open
    with opener(path, 'wb') as f:
        f.write(header + array.tobytes())


def fake_mnist(root, num_train=12, num_test=5, compress=False):
    r"""Random 28x28 images and labels ``0, 1, ..., 9, 0, ...`` in
    torchvision's ``root/MNIST/raw`` layout; returns them per split."""
    raw = root / 'MNIST' / 'raw'
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    out = {}
    suffix = '.gz' if compress else ''
    for split, prefix, n in [('train', 'train', num_train),
                             ('test', 't10k', num_test)]:
        images = rng.integers(0, 256, (n, 28, 28))
        labels = np.arange(n) % 10
        write_idx(raw / f'{prefix}-images-idx3-ubyte{suffix}', images,
                  compress)
        write_idx(raw / f'{prefix}-labels-idx1-ubyte{suffix}', labels,
                  compress)
        out[split] = (images, labels)
    return out
