import pytest
import torch

from tests.fake_datasets import fake_mnist
from torch_geometric_deepsets.datasets import load_digit_images
from torch_geometric_deepsets.datasets.digits import SKLEARN_TEST_FRACTION


def test_sklearn_digits_split():
    train_x, train_y = load_digit_images('train')
    test_x, test_y = load_digit_images('test')
    assert train_x.shape[1] == test_x.shape[1] == 64
    assert len(train_x) + len(test_x) == 1797
    assert float(train_x.min()) == 0.0 and float(train_x.max()) == 1.0
    # Stratified: every digit keeps its share in the test split.
    for digit in range(10):
        n_test = int((test_y == digit).sum())
        n_all = n_test + int((train_y == digit).sum())
        assert n_test == round(SKLEARN_TEST_FRACTION * n_all)
    # Disjoint and reproducible.
    same = (train_x.unsqueeze(1) == test_x.unsqueeze(0)).all(-1)
    duplicates_in_sklearn = 0  # load_digits has no exact duplicates
    assert int(same.sum()) == duplicates_in_sklearn
    again_x, _ = load_digit_images('train')
    assert torch.equal(again_x, train_x)


@pytest.mark.parametrize('compress', [False, True])
def test_mnist_from_local_torchvision_root(tmp_path, compress):
    raw = fake_mnist(tmp_path, compress=compress)
    for split in ('train', 'test'):
        images, labels = load_digit_images(split, 'mnist', str(tmp_path))
        expected_images, expected_labels = raw[split]
        assert images.shape == (len(expected_labels), 784)
        assert torch.allclose(
            images, torch.from_numpy(expected_images.reshape(
                len(expected_labels), -1) / 255.0).float())
        assert labels.tolist() == expected_labels.tolist()


def test_mnist_errors(tmp_path):
    with pytest.raises(ValueError, match="'mnist_root'"):
        load_digit_images('train', 'mnist')
    with pytest.raises(FileNotFoundError, match='train-images-idx3-ubyte'):
        load_digit_images('train', 'mnist', str(tmp_path))
    with pytest.raises(ValueError, match="'mnist_root' is only used"):
        load_digit_images('train', 'sklearn', str(tmp_path))
    with pytest.raises(ValueError, match="'source'"):
        load_digit_images('train', 'svhn')
    with pytest.raises(ValueError, match="'split'"):
        load_digit_images('val')

    fake_mnist(tmp_path)
    path = tmp_path / 'MNIST' / 'raw' / 't10k-images-idx3-ubyte'
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match='truncated'):
        load_digit_images('test', 'mnist', str(tmp_path))
    path.write_bytes(b'\x00\x00\x0d\x01abcd')
    with pytest.raises(ValueError, match='IDX'):
        load_digit_images('test', 'mnist', str(tmp_path))
