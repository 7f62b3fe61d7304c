import pytest
import torch

from torch_geometric_deepsets.datasets import (
    DigitSumImages,
    DigitSumText,
    load_digit_images,
)


def sums(dataset):
    return torch.tensor([float(d.x.sum()) for d in dataset])


def test_digit_sum_text(tmp_path):
    data = DigitSumText(str(tmp_path), num_sets=30, sizes=[1, 3, 10], seed=4)
    assert len(data) == 30
    assert data.set_sizes().tolist() == [1, 3, 10] * 10
    first = data[2]
    assert first.x.dtype == torch.long and first.x.shape == (10, 1)
    assert first.edge_index is None
    assert int(data.x.min()) >= 0 and int(data.x.max()) <= 9
    # Every digit occurs (a constant generator would fail this).
    assert torch.unique(data.x).numel() == 10
    assert torch.equal(data.y, sums(data))
    assert str(data) == 'DigitSumText(30, split=train, num_sets=30, ' \
        'sizes=[1, 3, 10])'


def test_digit_sum_text_is_deterministic_and_cached(tmp_path, monkeypatch):
    a = DigitSumText(str(tmp_path / 'a'), num_sets=20, seed=1)
    b = DigitSumText(str(tmp_path / 'b'), num_sets=20, seed=1)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    other_seed = DigitSumText(str(tmp_path / 'a'), num_sets=20, seed=2)
    assert not torch.equal(other_seed.x, a.x)
    # Same seed, other split: an independent stream.
    test = DigitSumText(str(tmp_path / 'a'), 'test', num_sets=20,
                        sizes=range(1, 11), seed=1)
    assert not torch.equal(test.x, a.x)
    # Defaults per split.
    assert DigitSumText(str(tmp_path / 'c'), 'test', num_sets=40) \
        .set_sizes().tolist() == list(range(5, 101, 5)) * 2

    # A second instance with the same settings loads the file.
    def fail(self, rng):
        raise AssertionError('regenerated')

    monkeypatch.setattr(DigitSumText, 'generate', fail)
    again = DigitSumText(str(tmp_path / 'a'), num_sets=20, seed=1)
    assert torch.equal(again.x, a.x)
    with pytest.raises(AssertionError, match='regenerated'):
        DigitSumText(str(tmp_path / 'a'), num_sets=21, seed=1)


def test_digit_sum_text_pre_transform(tmp_path):
    def double(data):
        data.y = data.y * 2
        return data

    data = DigitSumText(str(tmp_path), num_sets=5, pre_transform=double)
    assert torch.equal(data.y, 2 * sums(data))


@pytest.mark.parametrize('kwargs, error, match', [
    ({'split': 'val'}, ValueError, "'split'"),
    ({'num_sets': 0}, ValueError, "'num_sets'"),
    ({'num_sets': 2.5}, TypeError, "'num_sets'"),
    ({'sizes': []}, ValueError, "'sizes'"),
    ({'sizes': [3, 0]}, ValueError, "'sizes'"),
    ({'sizes': 'abc'}, TypeError, "'sizes'"),
    ({'seed': -1}, ValueError, "'seed'"),
])
def test_digit_sum_text_rejects_bad_arguments(tmp_path, kwargs, error,
                                              match):
    with pytest.raises(error, match=match):
        DigitSumText(str(tmp_path), **kwargs)


def test_digit_sum_images(tmp_path):
    data = DigitSumImages(str(tmp_path), num_sets=40, sizes=[2, 5], seed=3)
    images, labels = load_digit_images('train')
    assert data.x.shape == (140, 64) and data.digit.shape == (140, )
    # Every element is an image of the training split, with its label.
    match = (data.x.unsqueeze(1) == images.unsqueeze(0)).all(-1)
    assert bool(match.any(1).all())
    owner = match.float().argmax(1)
    assert torch.equal(labels[owner], data.digit)
    assert torch.equal(data.y, torch.tensor(
        [float(d.digit.sum()) for d in data]))

    # Test sets only use test images.
    test = DigitSumImages(str(tmp_path), 'test', num_sets=10, sizes=[3])
    test_images, _ = load_digit_images('test')
    in_test = (test.x.unsqueeze(1) == test_images.unsqueeze(0)).all(-1)
    assert bool(in_test.any(1).all())

    with pytest.raises(ValueError, match="'source'"):
        DigitSumImages(str(tmp_path), source='cifar')
    with pytest.raises(ValueError, match="'mnist_root'"):
        DigitSumImages(str(tmp_path), source='mnist')
