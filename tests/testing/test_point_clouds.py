r"""The offline stand-ins of PyG's point-cloud datasets: PyG's own classes
process what :mod:`torch_geometric_deepsets.testing` writes, without
downloading, with the splits, labels and parts the writers promise."""
import pytest
import torch

import torch_geometric.transforms as T
from torch_geometric.datasets import GeometricShapes, ModelNet, ShapeNet
from torch_geometric_deepsets.testing import (
    write_geometric_shapes,
    write_modelnet,
    write_shapenet,
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    def no_download(self):
        raise AssertionError(f'{type(self).__name__} tried to download')
    for cls in (ModelNet, ShapeNet, GeometricShapes):
        monkeypatch.setattr(cls, 'download', no_download)


def sides(data):
    r"""The side lengths of a normalised box mesh along x, y and z."""
    pos = T.NormalizeScale()(data.clone()).pos
    return pos.max(0).values - pos.min(0).values


@pytest.mark.parametrize('name,classes', [('10', 10), ('40', 40)])
def test_modelnet_splits_labels_and_shapes(tmp_path, name, classes):
    root = str(tmp_path / f'ModelNet{name}')
    names = write_modelnet(root, name, per_split=2)
    assert len(names) == classes and names == sorted(names)
    assert 'chair' in names and ('airplane' in names) == (name == '40')
    for train in (True, False):
        dataset = ModelNet(root, name, train=train)
        assert len(dataset) == 2 * classes
        # PyG labels the classes in sorted folder order: the order returned.
        assert sorted(int(d.y) for d in dataset) == sorted(
            2 * list(range(classes)))
    data = dataset[0]
    assert data.pos.shape == (8, 3) and data.face.shape == (3, 12)
    if name == '10':
        # Every class its own box, told apart even after normalisation (of
        # ModelNet40's, a few differ by little more than the jitter).
        boxes = torch.stack([sides(d) for d in sorted(dataset, key=lambda d:
                                                      int(d.y))])
        gaps = torch.cdist(boxes, boxes).view(classes, 2, classes, 2)
        gaps = gaps.amin((1, 3)).fill_diagonal_(float('inf'))
        assert gaps.min() > 0.2


def test_geometric_shapes(tmp_path):
    root = str(tmp_path / 'GeometricShapes')
    assert write_geometric_shapes(root, per_split=3) == [
        '2d_circle', '2d_square', '3d_cube']
    dataset = GeometricShapes(root, train=False)
    assert len(dataset) == 9 and dataset.num_classes == 3


def test_shapenet_splits_and_parts(tmp_path):
    root = str(tmp_path / 'ShapeNet')
    parts = write_shapenet(root, ['Mug', 'Airplane'], num_points=32,
                           per_split=3)
    assert parts == {'Mug': ShapeNet.seg_classes['Mug'][:2],
                     'Airplane': ShapeNet.seg_classes['Airplane'][:2]}
    for split, size in (('train', 6), ('val', 6), ('test', 6),
                        ('trainval', 12)):
        assert len(ShapeNet(root, ['Mug', 'Airplane'], split=split)) == size
    dataset = ShapeNet(root, ['Mug'], split='test')
    assert len(dataset) == 3
    data = dataset[0]
    assert data.pos.shape == (32, 3) and data.x.shape == (32, 3)
    assert torch.allclose(data.x.norm(dim=-1), torch.ones(32))  # normals
    # The first part below the box's middle height, the second above.
    low, high = parts['Mug']
    middle = (data.pos[:, 2].max() + data.pos[:, 2].min()) / 2
    assert set(data.y[data.pos[:, 2] < middle - 1e-4].tolist()) == {low}
    assert set(data.y[data.pos[:, 2] > middle + 1e-4].tolist()) == {high}


@pytest.mark.parametrize('write,kwargs,error,match', [
    (write_modelnet, {'name': '20'}, ValueError,
     r"'name' must be '10' or '40' \(got '20'\)"),
    (write_modelnet, {'per_split': 0}, ValueError, "'per_split'"),
    (write_geometric_shapes, {'per_split': 1.5}, TypeError, "'per_split'"),
    (write_shapenet, {'categories': ['Mug', 'Teapot']}, ValueError,
     r"'categories' must be some of \['Airplane', 'Bag', .*\(got \['Mug', "
     r"'Teapot'\]\)"),
    (write_shapenet, {'categories': []}, ValueError, "'categories'"),
    (write_shapenet, {'num_points': 0}, ValueError, "'num_points'"),
])
def test_bad_arguments_are_named(tmp_path, write, kwargs, error, match):
    with pytest.raises(error, match=match):
        write(str(tmp_path / 'root'), **kwargs)
    assert not (tmp_path / 'root').exists()  # nothing written
