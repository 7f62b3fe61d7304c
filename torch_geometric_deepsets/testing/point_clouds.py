r"""Tiny offline stand-ins of PyG's point-cloud datasets
(:class:`~torch_geometric.datasets.ModelNet`,
:class:`~torch_geometric.datasets.ShapeNet`,
:class:`~torch_geometric.datasets.GeometricShapes`), written in each
dataset's own raw layout, so that PyG's classes process them exactly as
the real files and never call :meth:`download`: for tests, documentation
and trying a pipeline without network. Every class is a box of its own side
ratios, so that a model can tell the classes apart from a few points.

What each class looks for before it would download (its
:obj:`raw_file_names`), and what these functions write:

* :class:`~torch_geometric.datasets.ModelNet`: ``raw/<class>`` for the
  ten ModelNet10 classes (also for ModelNet40); then every
  ``raw/<class>/{train,test}/<class>_*.off``, labels in sorted class
  order.
* :class:`~torch_geometric.datasets.GeometricShapes`: :obj:`raw/2d_circle`;
  then every ``raw/<class>/{train,test}/*.off``.
* :class:`~torch_geometric.datasets.ShapeNet`: ``raw/<synset id>`` for
  all 16 categories and :obj:`raw/train_test_split`; then the files named
  in :obj:`raw/train_test_split/shuffled_{train,val,test}_file_list.json`
  (``"shape_data/<synset>/<name>"`` is ``raw/<synset>/<name>.txt``,
  rows :obj:`x y z nx ny nz part`).
"""
import json
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_geometric_deepsets.checks import check_int

_MODELNET10 = [
    'bathtub', 'bed', 'chair', 'desk', 'dresser', 'monitor', 'night_stand',
    'sofa', 'table', 'toilet'
]
_MODELNET40 = sorted(_MODELNET10 + [
    'airplane', 'bench', 'bookshelf', 'bottle', 'bowl', 'car', 'cone', 'cup',
    'curtain', 'door', 'flower_pot', 'glass_box', 'guitar', 'keyboard',
    'lamp', 'laptop', 'mantel', 'person', 'piano', 'plant', 'radio',
    'range_hood', 'sink', 'stairs', 'stool', 'tent', 'tv_stand', 'vase',
    'wardrobe', 'xbox'
])
_GEOMETRIC_SHAPES = ['2d_circle', '2d_square', '3d_cube']

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


def _box_extents(k: int) -> Tuple[float, float, float]:
    r"""The side lengths of class :obj:`k`'s box: they differ between the
    classes even after :class:`~torch_geometric.transforms.NormalizeScale`
    (:math:`(7k \bmod 10, (k + \lfloor k / 10 \rfloor) \bmod 4)` differs
    for all :math:`k < 40`)."""
    return (1.0, 0.15 + 0.85 * ((k * 7) % 10) / 9,
            0.15 + 0.85 * ((k + k // 10) % 4) / 3)


def _box_mesh(k: int, jitter: float = 0.0,
              generator: Optional[torch.Generator] = None) -> Tensor:
    r"""The corner positions of class :obj:`k`'s box (faces:
    :obj:`_TRIANGLES`), optionally jittered, and shifted off the origin (so
    that normalisation has an offset to remove)."""
    pos = _CORNERS * torch.tensor(_box_extents(k))
    if jitter > 0:
        pos = pos + jitter * torch.randn(pos.shape, generator=generator)
    return pos + torch.tensor([2.0, -1.0, 0.5])


def _write_off(path: str, pos: Tensor,
               faces: Sequence[Tuple[int, int, int]]) -> None:
    r"""A triangle mesh in the Object File Format, laid out as ModelNet's
    files (:obj:`OFF`, then :obj:`#vertices #faces #edges`)."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    lines = ['OFF', f'{pos.size(0)} {len(faces)} 0']
    lines += [' '.join(f'{v:.6f}' for v in row) for row in pos.tolist()]
    lines += [f'3 {a} {b} {c}' for a, b, c in faces]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def _write_mesh_classes(raw_dir: str, classes: Sequence[str],
                        per_split: int, file_name: Callable[[str, int], str],
                        seed: int) -> List[str]:
    per_split = check_int('per_split', per_split, 1)
    generator = torch.Generator().manual_seed(seed)
    for k, cls in enumerate(classes):
        for split in ('train', 'test'):
            for i in range(per_split):
                pos = _box_mesh(k, jitter=0.02, generator=generator)
                path = osp.join(raw_dir, cls, split, file_name(cls, i))
                _write_off(path, pos, _TRIANGLES)
    return sorted(classes)


def write_modelnet(root: str, name: str = '10', per_split: int = 1,
                   seed: int = 0) -> List[str]:
    r"""Writes :obj:`root/raw` for
    :obj:`ModelNet(root, name)`: every class of ModelNet10 or
    ModelNet40 with :obj:`per_split` meshes (a jittered box, 8 vertices and
    12 triangles) in its :obj:`train` and in its :obj:`test` split.

    .. code-block:: python

        from torch_geometric.datasets import ModelNet
        from torch_geometric_deepsets.testing import write_modelnet

        write_modelnet('data/offline/ModelNet10', '10', per_split=2)
        train = ModelNet('data/offline/ModelNet10', '10', train=True)
        len(train)  # 20: 2 meshes of each of the 10 classes

    Args:
        root (str): The dataset's root folder, as given to
            :class:`~torch_geometric.datasets.ModelNet`.
        name (str, optional): :obj:`"10"` or :obj:`"40"`.
            (default: :obj:`"10"`)
        per_split (int, optional): Meshes per class and split.
            (default: :obj:`1`)
        seed (int, optional): Seed of the jitter. (default: :obj:`0`)

    Returns:
        The class names in the order of PyG's labels.
    """
    if name not in ('10', '40'):
        raise ValueError(f"'name' must be '10' or '40' (got {name!r})")
    classes = _MODELNET10 if name == '10' else _MODELNET40
    return _write_mesh_classes(osp.join(root, 'raw'), classes, per_split,
                               lambda cls, i: f'{cls}_{i + 1:04d}.off', seed)


def write_geometric_shapes(root: str, per_split: int = 1,
                           seed: int = 0) -> List[str]:
    r"""Writes :obj:`root/raw` for :obj:`GeometricShapes(root)`: its three
    classes (here :obj:`"2d_circle"`, :obj:`"2d_square"` and
    :obj:`"3d_cube"`, of PyG's 40) with :obj:`per_split` meshes each in
    :obj:`train` and in :obj:`test`.

    Args:
        root (str): The dataset's root folder.
        per_split (int, optional): Meshes per class and split.
            (default: :obj:`1`)
        seed (int, optional): Seed of the jitter. (default: :obj:`0`)

    Returns:
        The class names in the order of PyG's labels.
    """
    return _write_mesh_classes(osp.join(root, 'raw'), _GEOMETRIC_SHAPES,
                               per_split, lambda cls, i: f'{i + 1}.off', seed)


def write_shapenet(root: str, categories: Sequence[str] = ('Airplane',
                                                           'Mug'),
                   num_points: int = 64, per_split: int = 2,
                   seed: int = 0) -> Dict[str, List[int]]:
    r"""Writes :obj:`root/raw` for :obj:`ShapeNet(root, categories)`: for
    each category, :obj:`per_split` point clouds in each of :obj:`train`,
    :obj:`val` and :obj:`test`, points on the category's box with their
    face normals. A point's part label is the category's first part below
    the box's middle height and its second part above, so that parts are
    learnable from the coordinates.

    .. code-block:: python

        from torch_geometric.datasets import ShapeNet
        from torch_geometric_deepsets.testing import write_shapenet

        write_shapenet('data/offline/ShapeNet', categories=['Mug'])
        dataset = ShapeNet('data/offline/ShapeNet', categories=['Mug'])
        dataset[0]  # Data(x=[64, 3], y=[64], pos=[64, 3], category=[1])

    Args:
        root (str): The dataset's root folder.
        categories (Sequence[str], optional): Categories of
            :obj:`ShapeNet.category_ids`. (default:
            :obj:`("Airplane", "Mug")`)
        num_points (int, optional): Points per cloud. (default: :obj:`64`)
        per_split (int, optional): Clouds per category and split.
            (default: :obj:`2`)
        seed (int, optional): Seed of the points. (default: :obj:`0`)

    Returns:
        The two part labels used, per category.
    """
    from torch_geometric.datasets import ShapeNet

    unknown = [c for c in categories if c not in ShapeNet.category_ids]
    if unknown or not categories:
        raise ValueError(f"'categories' must be some of "
                         f"{sorted(ShapeNet.category_ids)} (got "
                         f"{list(categories)!r})")
    num_points = check_int('num_points', num_points, 1)
    per_split = check_int('per_split', per_split, 1)
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
        extents = torch.tensor(_box_extents(k))
        for split in lists:
            for i in range(per_split):
                pos, normal = _box_surface(extents, num_points, generator)
                part = torch.where(pos[:, 2] > extents[2] / 2, labels[1],
                                   labels[0])
                name = f'{split}_{i}'
                with open(osp.join(raw_dir, synset, f'{name}.txt'), 'w') as f:
                    for p, n, label in zip(pos.tolist(), normal.tolist(),
                                           part.tolist()):
                        f.write(' '.join(f'{v:.6f}' for v in p + n) +
                                f' {label}\n')
                lists[split].append(f'shape_data/{synset}/{name}')
    split_dir = osp.join(raw_dir, 'train_test_split')
    os.makedirs(split_dir, exist_ok=True)
    for split, names in lists.items():
        path = osp.join(split_dir, f'shuffled_{split}_file_list.json')
        with open(path, 'w') as f:
            json.dump(names, f)
    return parts


def _box_surface(extents: Tensor, num_points: int,
                 generator: torch.Generator) -> Tuple[Tensor, Tensor]:
    r"""Points on the surface of an axis-aligned box and their normals."""
    pos = torch.rand(num_points, 3, generator=generator) * extents
    axis = torch.randint(0, 3, (num_points, ), generator=generator)
    side = torch.randint(0, 2, (num_points, ), generator=generator)
    rows = torch.arange(num_points)
    pos[rows, axis] = side.float() * extents[axis]
    normal = torch.zeros(num_points, 3)
    normal[rows, axis] = side.float() * 2 - 1
    return pos, normal
