import math

import numpy as np
import pytest
import torch

from torch_geometric_deepsets.datasets import PopulationStatistics
from torch_geometric_deepsets.datasets.population import (
    ROTATION_EIGENVALUES,
    draw_covariance,
    gaussian_entropy,
    gaussian_mutual_information,
)


def test_closed_forms():
    assert gaussian_entropy(1.0) == pytest.approx(1.4189385, abs=1e-6)
    # Two unit-variance coordinates with correlation r: -log(1 - r^2) / 2.
    r = 0.6
    cov = np.array([[1.0, r], [r, 1.0]])
    assert gaussian_mutual_information(cov) == pytest.approx(
        -0.5 * math.log(1 - r**2))
    assert gaussian_mutual_information(np.eye(6)) == pytest.approx(0.0)


def test_covariances_of_each_task():
    rng = np.random.default_rng(0)
    cov, h = draw_covariance(rng, 'rotation', 2)
    assert np.allclose(np.linalg.eigvalsh(cov), sorted(ROTATION_EIGENVALUES))
    assert h == pytest.approx(gaussian_entropy(cov[0, 0]))

    cov, mi = draw_covariance(rng, 'correlation', 8)
    block = cov[:4, :4]
    alpha = cov[0, 4] / cov[0, 0]
    assert np.allclose(cov[:4, 4:], alpha * block)
    assert np.allclose(cov[4:, 4:], block)
    assert mi == pytest.approx(-2.0 * math.log(1 - alpha**2))

    cov, mi = draw_covariance(rng, 'rank1', 8)
    assert np.linalg.matrix_rank(cov - np.eye(8), tol=1e-9) == 1
    assert mi > 0

    cov, mi = draw_covariance(rng, 'random', 8)
    assert np.linalg.eigvalsh(cov).min() > 0 and mi > 0


@pytest.mark.parametrize('task', ['rotation', 'correlation', 'rank1',
                                  'random'])
def test_samples_match_their_target(tmp_path, task):
    # Large samples: the plug-in statistic of the sample covariance must
    # be close to the stored target.
    data = PopulationStatistics(str(tmp_path), task=task, num_sets=4,
                                min_size=20000, max_size=20000, dim=4,
                                seed=1)
    for s in data:
        x = s.x.double().numpy()
        cov = x.T @ x / len(x)
        if task == 'rotation':
            estimate = gaussian_entropy(cov[0, 0])
        else:
            estimate = gaussian_mutual_information(cov)
        assert estimate == pytest.approx(float(s.y), abs=0.03)


def test_population_sizes_determinism_and_errors(tmp_path):
    data = PopulationStatistics(str(tmp_path), num_sets=30, min_size=5,
                                max_size=9)
    sizes = data.set_sizes()
    assert int(sizes.min()) >= 5 and int(sizes.max()) <= 9
    assert len(set(sizes.tolist())) > 1
    assert data.x.shape[1] == 2 and data.y.shape == (30, )
    again = PopulationStatistics(str(tmp_path / 'b'), num_sets=30,
                                 min_size=5, max_size=9)
    assert torch.equal(again.x, data.x)
    # A prefix is a dataset of its own for the training-size sweep.
    assert torch.equal(data[:7].set_sizes(), sizes[:7])

    with pytest.raises(ValueError, match="'task'"):
        PopulationStatistics(str(tmp_path), task='kurtosis')
    with pytest.raises(ValueError, match="'dim' must be even"):
        PopulationStatistics(str(tmp_path), task='random', dim=5)
    with pytest.raises(ValueError, match="'max_size'"):
        PopulationStatistics(str(tmp_path), min_size=10, max_size=9)
