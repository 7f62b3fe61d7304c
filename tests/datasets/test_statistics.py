import numpy as np
import pytest
import torch

from torch_geometric_deepsets.datasets import SetStatistics
from torch_geometric_deepsets.datasets.statistics import set_statistic


def test_statistics_by_hand():
    values = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
    assert set_statistic(values, 'median') == 3.5
    assert set_statistic(values[:5], 'median') == 3.0
    assert set_statistic(values, 'second_largest') == 5.0
    # Sum 23, sum of squares 133: (133 - 23^2 / 6) / (6 - 1).
    assert set_statistic(values, 'variance') == pytest.approx(269 / 30)
    assert set_statistic(values, 'distinct') == 5.0
    with pytest.raises(ValueError, match="'statistic' must be one of"):
        set_statistic(values, 'mode')


@pytest.mark.parametrize('statistic', ['median', 'second_largest',
                                       'variance', 'distinct'])
def test_targets_match_the_sets(tmp_path, statistic):
    data = SetStatistics(str(tmp_path), statistic, num_sets=40, min_size=2,
                         max_size=9, num_values=6 if statistic == 'distinct'
                         else None)
    sizes = data.set_sizes()
    assert int(sizes.min()) >= 2 and int(sizes.max()) <= 9
    for s in data:
        x = s.x.view(-1).double()
        expected = {
            'median': x.sort().values[(x.numel() - 1) // 2:x.numel() // 2 +
                                      1].mean(),
            'second_largest': x.sort().values[-2],
            'variance': x.var(),
            'distinct': torch.tensor(float(x.unique().numel())),
        }[statistic]
        assert float(s.y) == pytest.approx(float(expected), abs=1e-6)


def test_values_determinism_and_errors(tmp_path):
    reals = SetStatistics(str(tmp_path), 'variance', num_sets=50)
    assert reals.x.shape[1] == 1 and reals.y.shape == (50, )
    assert float(reals.x.min()) >= 0 and float(reals.x.max()) < 1
    ints = SetStatistics(str(tmp_path), 'variance', num_sets=50,
                         num_values=10)
    assert torch.equal(ints.x, ints.x.round()) and float(ints.x.max()) <= 9
    assert not torch.equal(ints.x, reals.x)
    again = SetStatistics(str(tmp_path / 'b'), 'variance', num_sets=50)
    assert torch.equal(again.x, reals.x) and torch.equal(again.y, reals.y)
    test = SetStatistics(str(tmp_path), 'variance', split='test',
                         num_sets=50)
    assert not torch.equal(test.x[:10], reals.x[:10])
    with pytest.raises(ValueError, match="'statistic' must be one of"):
        SetStatistics(str(tmp_path), 'mean')
    with pytest.raises(ValueError, match="'min_size' must be an int >= 2"):
        SetStatistics(str(tmp_path), 'median', min_size=1)
    with pytest.raises(ValueError, match="'max_size' must be an int >= 5"):
        SetStatistics(str(tmp_path), 'median', max_size=4)
