import pytest
import torch

import torch_geometric.transforms as T
from torch_geometric.data import Batch, Data, HeteroData
from torch_geometric_deepsets import DeepSetsInvariant, RandomAxisScale, ToSet
from torch_geometric_deepsets.testing import assert_permutation_invariant
from torch_geometric_deepsets.testing.point_clouds import _TRIANGLES
from torch_geometric_deepsets.testing.point_clouds import _box_mesh as box_mesh


def mesh():
    return Data(pos=box_mesh(3), face=torch.tensor(_TRIANGLES).t(),
                y=torch.tensor([3]))


# ToSet #######################################################################


def test_to_set_repr():
    assert str(ToSet()) == 'ToSet(pos=True, normal=False, features=False)'
    assert str(ToSet(normal=True, features=True)) == \
        'ToSet(pos=True, normal=True, features=True)'


def test_to_set_mesh_becomes_edgeless_set_of_vertices():
    data = mesh()
    out = ToSet()(data)
    assert 'face' not in out
    assert torch.equal(out.x, data.pos)
    assert torch.equal(out.pos, data.pos)  # kept for later transforms
    assert torch.equal(out.y, torch.tensor([3]))
    assert out.num_nodes == 8 and out.num_edges == 0
    # The input object is untouched (PyG transforms work on a copy).
    assert 'face' in data and data.x is None


def test_to_set_drops_every_edge_level_attribute():
    data = Data(pos=torch.randn(4, 3), x=torch.randn(4, 2),
                edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]),
                edge_attr=torch.randn(3, 5), edge_weight=torch.rand(3),
                edge_label=torch.tensor([1, 0, 1]), y=torch.tensor([0]))
    out = ToSet(features=True)(data)
    assert set(out.keys()) == {'x', 'pos', 'y'}
    assert torch.equal(out.x, torch.cat([data.pos, data.x], dim=-1))


def test_to_set_concatenates_pos_normal_and_features_in_order():
    pos, normal = torch.randn(5, 3), torch.randn(5, 3)
    feat = torch.randn(5, 2)
    data = Data(pos=pos, normal=normal, x=feat)
    out = ToSet(normal=True, features=True)(data)
    assert torch.equal(out.x, torch.cat([pos, normal, feat], dim=-1))
    assert torch.equal(ToSet(pos=False, normal=True)(data).x, normal)
    assert torch.equal(ToSet(pos=False, features=True)(data).x, feat)
    # Without features=True the old features are replaced, not appended.
    assert torch.equal(ToSet()(data).x, pos)


def test_to_set_casts_integer_and_one_dimensional_features():
    data = Data(pos=torch.zeros(3, 2), x=torch.tensor([1, 2, 3]))
    out = ToSet(features=True)(data)
    assert out.x.dtype == torch.float32
    assert out.x.tolist() == [[0., 0., 1.], [0., 0., 2.], [0., 0., 3.]]
    double = Data(pos=torch.zeros(2, 3, dtype=torch.float64))
    assert ToSet()(double).x.dtype == torch.float64


def test_to_set_after_sample_points_with_normals():
    transform = T.Compose([T.NormalizeScale(),
                           T.SamplePoints(50, include_normals=True),
                           ToSet(normal=True)])
    out = transform(mesh())
    assert out.x.shape == (50, 6) and 'face' not in out
    assert torch.equal(out.x[:, :3], out.pos)
    assert torch.allclose(out.x[:, 3:].norm(dim=-1), torch.ones(50))
    # Box normals are axis-aligned: one non-zero coordinate per point.
    assert torch.equal((out.x[:, 3:].abs() > 1e-4).sum(-1),
                       torch.ones(50, dtype=torch.long))


def test_to_set_output_batches_as_sets():
    sets = [ToSet()(Data(pos=torch.randn(n, 3),
                         edge_index=torch.tensor([[0], [1]])))
            for n in (3, 5, 2)]
    batch = Batch.from_data_list(sets)
    assert batch.batch.tolist() == [0] * 3 + [1] * 5 + [2] * 2
    assert batch.edge_index is None
    model = DeepSetsInvariant(phi=[3, 8], rho=[8, 2])
    assert model(batch.x, batch.batch).shape == (3, 2)
    assert_permutation_invariant(model, batch.x, batch.batch)


def test_to_set_errors():
    with pytest.raises(ValueError, match="at least one of 'pos'"):
        ToSet(pos=False)
    with pytest.raises(ValueError, match=r"'data.normal'.*include_normals"):
        ToSet(normal=True)(mesh())
    with pytest.raises(ValueError, match=r"'data.x' but the Data"):
        ToSet(features=True)(mesh())
    with pytest.raises(ValueError, match=r"'data.pos' but the Data"):
        ToSet()(Data(x=torch.randn(3, 2)))
    bad = Data(pos=torch.randn(4, 3), normal=torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"'data.normal' has shape \(3, 3\) "
                       r"but the set has 4 elements"):
        ToSet(normal=True)(bad)
    with pytest.raises(TypeError, match='HeteroData'):
        ToSet()(HeteroData())


# RandomAxisScale #############################################################


def test_random_axis_scale_repr_and_defaults():
    assert str(RandomAxisScale()) == 'RandomAxisScale((0.8, 1.25))'
    assert str(RandomAxisScale([1, 2])) == 'RandomAxisScale((1.0, 2.0))'


@pytest.mark.parametrize('scales', [(1.25, 0.8), (0.0, 1.0), (-1.0, 1.0),
                                    (1.0, ), 'ab', (True, 2.0), 1.0])
def test_random_axis_scale_rejects_bad_scales(scales):
    with pytest.raises(ValueError, match="'scales'"):
        RandomAxisScale(scales)


def test_random_axis_scale_draws_one_factor_per_axis():
    pos = torch.randn(20, 3)
    factors = []
    for _ in range(500):
        out = RandomAxisScale((0.8, 1.25))(Data(pos=pos))
        ratio = out.pos / pos
        # One factor per axis, shared by all points.
        assert torch.allclose(ratio, ratio[:1].expand_as(ratio))
        factors.append(ratio[0])
    factors = torch.stack(factors)
    assert factors.min() >= 0.8 and factors.max() <= 1.25
    assert factors.min() < 0.82 and factors.max() > 1.23
    # Independent across axes (an isotropic scale would give correlation 1).
    corr = torch.corrcoef(factors.t())
    assert corr[0, 1].abs() < 0.2 and corr[0, 2].abs() < 0.2
    assert torch.allclose(factors.mean(0), torch.full((3, ), 1.025),
                          atol=0.03)


def test_random_axis_scale_is_repeatable_with_torch_seed():
    pos = torch.randn(4, 3)
    torch.manual_seed(7)
    a = RandomAxisScale()(Data(pos=pos)).pos
    torch.manual_seed(7)
    b = RandomAxisScale()(Data(pos=pos)).pos
    assert torch.equal(a, b)


def test_random_axis_scale_keeps_normals_perpendicular():
    # Points of the plane x + 2y + 3z = 0; its tangents are t1 and t2.
    t1, t2 = torch.tensor([2., -1., 0.]), torch.tensor([3., 0., -1.])
    coef = torch.randn(10, 2)
    pos = coef[:, :1] * t1 + coef[:, 1:] * t2
    normal = torch.tensor([1., 2., 3.]).expand(10, 3) / 14**0.5
    out = RandomAxisScale((0.5, 2.0))(Data(pos=pos, normal=normal))
    scale = (out.pos / pos)[0]
    for t in (t1, t2):
        assert torch.allclose(out.normal @ (t * scale), torch.zeros(10),
                              atol=1e-5)
    assert torch.allclose(out.normal.norm(dim=-1), torch.ones(10))
    assert not torch.allclose(out.normal, normal)


def test_random_axis_scale_errors():
    with pytest.raises(ValueError, match="needs 'data.pos'"):
        RandomAxisScale()(Data(x=torch.randn(2, 3)))
    with pytest.raises(ValueError, match=r"'data.normal' has shape \(2, 2\) "
                       r"but 'data.pos' has \(2, 3\)"):
        RandomAxisScale()(Data(pos=torch.randn(2, 3),
                               normal=torch.randn(2, 2)))


def test_paper_augmentation_recipe():
    # The recipe of the module docstring: rotation about z by at most 18
    # degrees and per-axis scaling on the mesh, then sampling with normals.
    torch.manual_seed(0)
    augment = T.Compose([T.RandomRotate(18, axis=2),
                         RandomAxisScale((0.8, 1.25))])
    sample = T.Compose([T.SamplePoints(64, include_normals=True),
                        ToSet(normal=True)])
    base = T.NormalizeScale()(mesh())
    for _ in range(20):
        moved = augment(base)
        # z is only scaled, never mixed with x and y ...
        z_ratio = moved.pos[:, 2] / base.pos[:, 2]
        assert torch.allclose(z_ratio, z_ratio[:1].expand_as(z_ratio))
        assert 0.8 <= z_ratio[0] <= 1.25
        # ... and xy-directions turn by at most 18 degrees plus the 12.7
        # degrees that scaling by factors 0.8 and 1.25 can add.
        xy, xy0 = moved.pos[:, :2], base.pos[:, :2]
        cos = torch.nn.functional.cosine_similarity(xy, xy0, dim=-1)
        assert cos.min() >= torch.cos(torch.deg2rad(torch.tensor(30.7)))
        out = sample(moved)
        assert out.x.shape == (64, 6) and 'face' not in out
        assert torch.allclose(out.x[:, 3:].norm(dim=-1), torch.ones(64))
