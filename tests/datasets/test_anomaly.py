import pytest
import torch

from torch_geometric_deepsets.datasets import SetAnomaly, load_digit_images


def test_set_anomaly_composition(tmp_path):
    data = SetAnomaly(str(tmp_path), num_sets=50, seed=2)
    assert len(data) == 50 and data.x.shape == (800, 64)
    positions, majorities = [], []
    for s in data:
        assert s.x.size(0) == 16 and int(s.y.sum()) == 1
        odd = int(s.y.argmax())
        normal = torch.cat([s.digit[:odd], s.digit[odd + 1:]])
        assert bool((normal == normal[0]).all())
        assert int(s.digit[odd]) != int(normal[0])
        # The majority images are distinct images.
        rows = torch.cat([s.x[:odd], s.x[odd + 1:]])
        assert torch.unique(rows, dim=0).size(0) == 15
        positions.append(odd)
        majorities.append(int(normal[0]))
    # The odd position and the majority digit vary.
    assert len(set(positions)) > 5 and len(set(majorities)) > 5

    images, labels = load_digit_images('train')
    match = (data.x.unsqueeze(1) == images.unsqueeze(0)).all(-1)
    assert torch.equal(labels[match.float().argmax(1)], data.digit)


def test_set_anomaly_determinism_and_errors(tmp_path):
    a = SetAnomaly(str(tmp_path), 'test', num_sets=5, set_size=4, seed=1)
    b = SetAnomaly(str(tmp_path / 'b'), 'test', num_sets=5, set_size=4,
                   seed=1)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert a.set_sizes().tolist() == [4] * 5
    with pytest.raises(ValueError, match="'set_size'"):
        SetAnomaly(str(tmp_path), set_size=2)
    with pytest.raises(ValueError, match="'set_size' 200"):
        SetAnomaly(str(tmp_path), num_sets=1, set_size=200)
