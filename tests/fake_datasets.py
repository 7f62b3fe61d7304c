r"""Tiny offline copies of PyG's point-cloud datasets (and of MNIST), written
in each dataset's own raw layout so that the real dataset classes process
them and never call :meth:`download`.

What each class checks before it would download (``raw_file_names``, read
from the installed sources):

* :class:`~torch_geometric.datasets.ModelNet`: ``raw/<c>`` for the ten
  ModelNet10 classes (also for ModelNet40); it then reads every
  ``raw/<class>/{train,test}/<class>_*.off``, class ids in sorted order.
* :class:`~torch_geometric.datasets.GeometricShapes`: ``raw/2d_circle``; then
  every ``raw/<class>/{train,test}/*.off``.
* :class:`~torch_geometric.datasets.ShapeNet`: ``raw/<synset id>`` for all 16
  categories and ``raw/train_test_split``; then the files named in
  ``raw/train_test_split/shuffled_{train,val,test}_file_list.json``
  (``"shape_data/<synset>/<name>"`` -> ``raw/<synset>/<name>.txt``, rows
  ``x y z nx ny nz part``).

Every class gets its own box shape (different aspect ratios), so a model can
tell the classes apart from a few points.
"""
import gzip
import json
import os
import os.path as osp
import struct
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

MODELNET10 = [
    'bathtub', 'bed', 'chair', 'desk', 'dresser', 'monitor', 'night_stand',
    'sofa', 'table', 'toilet'
]
MODELNET40 = sorted(MODELNET10 + [
    'airplane', 'bench', 'bookshelf', 'bottle', 'bowl', 'car', 'cone', 'cup',
    'curtain', 'door', 'flower_pot', 'glass_box', 'guitar', 'keyboard',
    'lamp', 'laptop', 'mantel', 'person', 'piano', 'plant', 'radio',
    'range_hood', 'sink', 'stairs', 'stool', 'tent', 'tv_stand', 'vase',
    'wardrobe', 'xbox'
])
GEOMETRIC_SHAPES = ['2d_circle', '2d_square', '3d_cube']

# The 8 corners of the unit cube and its 12 outward-oriented triangles.
_CORNERS = torch.tensor([[x, y, z] for x in (0., 1.) for y in (0., 1.)
                         for z in (0., 1.)])
_TRIANGLES = [
    (0, 2, 3), (0, 3, 1),  # x = 0
    (4, 5, 7), (4, 7, 6),  # x = 1
    (0, 1, 5), (0, 5, 4),  # y = 0
    (2, 6, 7), (2, 7, 3),  # y = 1
    (0, 4, 6), (0, 6, 2),  # z = 0
    (1, 3, 7), (1, 7, 5),  # z = 1
]


def box_extents(k: int) -> Tuple[float, float, float]:
    r"""The box of class :obj:`k`: side lengths that differ between classes
    even after :class:`~torch_geometric.transforms.NormalizeScale`."""
    # (7k mod 10, (k + k // 10) mod 4) differs for all k < 40.
    return (1.0, 0.15 + 0.85 * ((k * 7) % 10) / 9,
            0.15 + 0.85 * ((k + k // 10) % 4) / 3)


def write_off(path: str, pos: torch.Tensor,
              faces: Sequence[Tuple[int, int, int]]) -> None:
    r"""Writes a triangle mesh in the Object File Format, as ModelNet's
    files are laid out (``OFF``, then ``#vertices #faces #edges``)."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    lines = ['OFF', f'{pos.size(0)} {len(faces)} 0']
    lines += [' '.join(f'{v:.6f}' for v in row) for row in pos.tolist()]
    lines += [f'3 {a} {b} {c}' for a, b, c in faces]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def box_mesh(k: int, jitter: float = 0.0,
             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""The corner positions of the box of class :obj:`k`, optionally
    jittered and shifted (to check that normalisation removes offsets)."""
    pos = _CORNERS * torch.tensor(box_extents(k))
    if jitter > 0:
        pos = pos + jitter * torch.randn(pos.shape, generator=generator)
    return pos + torch.tensor([2.0, -1.0, 0.5])


def _write_mesh_classes(raw_dir: str, classes: Sequence[str],
                        per_split: int, name_fn, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for k, cls in enumerate(classes):
        for split in ('train', 'test'):
            for i in range(per_split):
                pos = box_mesh(k, jitter=0.02, generator=generator)
                path = osp.join(raw_dir, cls, split, name_fn(cls, i))
                write_off(path, pos, _TRIANGLES)


def write_modelnet(root: str, name: str = '10', per_split: int = 1,
                   seed: int = 0) -> List[str]:
    r"""Writes ``root/raw`` for :obj:`ModelNet(root, name)`: every class of
    ModelNet10 or ModelNet40 with :obj:`per_split` meshes in ``train`` and in
    ``test``. Returns the classes in PyG's label order."""
    if name not in ('10', '40'):
        raise ValueError(f"'name' must be '10' or '40' (got {name!r})")
    classes = MODELNET10 if name == '10' else MODELNET40
    _write_mesh_classes(osp.join(root, 'raw'), classes, per_split,
                        lambda cls, i: f'{cls}_{i + 1:04d}.off', seed)
    return sorted(classes)


def write_geometric_shapes(root: str, per_split: int = 1,
                           seed: int = 0) -> List[str]:
    r"""Writes ``root/raw`` for :obj:`GeometricShapes(root)`. Returns the
    classes in PyG's label order."""
    _write_mesh_classes(osp.join(root, 'raw'), GEOMETRIC_SHAPES, per_split,
                        lambda cls, i: f'{i + 1}.off', seed)
    return sorted(GEOMETRIC_SHAPES)


def write_shapenet(root: str, categories: Sequence[str] = ('Airplane',
                                                           'Mug'),
                   num_points: int = 64, per_split: int = 2,
                   seed: int = 0) -> Dict[str, List[int]]:
    r"""Writes ``root/raw`` for :obj:`ShapeNet(root, categories)`: for each
    category, :obj:`per_split` point clouds in each of ``train``, ``val``
    and ``test``, points on the category's box with their face normals. The
    part label of a point is the category's first part below the box's
    middle height and its second part above, so parts are learnable from
    the coordinates. Returns the part labels used per category."""
    from torch_geometric.datasets import ShapeNet

    raw_dir = osp.join(root, 'raw')
    for synset in ShapeNet.category_ids.values():
        os.makedirs(osp.join(raw_dir, synset), exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    lists: Dict[str, List[str]] = {'train': [], 'val': [], 'test': []}
    parts: Dict[str, List[int]] = {}
    for k, category in enumerate(categories):
        synset = ShapeNet.category_ids[category]
        labels = ShapeNet.seg_classes[category][:2]
        parts[category] = labels
        extents = torch.tensor(box_extents(k))
        for split in lists:
            for i in range(per_split):
                pos, normal = _box_surface(extents, num_points, generator)
                part = torch.where(pos[:, 2] > extents[2] / 2, labels[1],
                                   labels[0])
                rows = torch.cat([pos, normal, part.unsqueeze(1).float()], 1)
                name = f'{split}_{i}'
                with open(osp.join(raw_dir, synset, f'{name}.txt'), 'w') as f:
                    for row in rows.tolist():
                        f.write(' '.join(f'{v:.6f}' for v in row[:-1]) +
                                f' {int(row[-1])}\n')
                lists[split].append(f'shape_data/{synset}/{name}')
    split_dir = osp.join(raw_dir, 'train_test_split')
    os.makedirs(split_dir, exist_ok=True)
    for split, names in lists.items():
        path = osp.join(split_dir, f'shuffled_{split}_file_list.json')
        with open(path, 'w') as f:
            json.dump(names, f)
    return parts


def _box_surface(extents: torch.Tensor, num_points: int,
                 generator: torch.Generator
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Points on the surface of an axis-aligned box and their normals."""
    pos = torch.rand(num_points, 3, generator=generator) * extents
    axis = torch.randint(0, 3, (num_points, ), generator=generator)
    side = torch.randint(0, 2, (num_points, ), generator=generator)
    rows = torch.arange(num_points)
    pos[rows, axis] = side.float() * extents[axis]
    normal = torch.zeros(num_points, 3)
    normal[rows, axis] = side.float() * 2 - 1
    return pos, normal


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
