import json
import os

import pytest
import torch

from torch_geometric_deepsets.datasets import PopulationStatistics
from torch_geometric_deepsets.experiments import EXPERIMENTS, main
from torch_geometric_deepsets.experiments.population_statistics import (
    plug_in_mse,
)
from torch_geometric_deepsets.experiments.set_anomaly import set_log_softmax

from ..datasets.test_digits import fake_mnist


def run(tmp_path, name, *extra, out='run'):
    argv = [
        name, '--out', str(tmp_path / out), '--data-root',
        str(tmp_path / 'data'), '--no-progress', '--no-plot', '--log-every',
        '5', *extra
    ]
    return main(argv)


def losses(tmp_path, out='run'):
    with open(tmp_path / out / 'metrics.json') as f:
        return [h['loss'] for h in json.load(f)['history']]


def assert_loss_falls(history, factor):
    assert len(history) >= 2
    assert history[-1] < factor * history[0], history


def test_registry():
    assert sorted(EXPERIMENTS) == sorted([
        'digit_sum_text', 'digit_sum_images', 'population_statistics',
        'set_anomaly'
    ])
    with pytest.raises(SystemExit):
        main(['no_such_experiment'])


def test_digit_sum_text(tmp_path, capsys):
    outcome = run(tmp_path, 'digit_sum_text', '--steps', '60', '--num-train',
                  '2000', '--test-sizes', '5', '40', '--test-per-size', '50')
    assert_loss_falls(losses(tmp_path), 0.5)
    rows = outcome.results['per_size']
    assert [r['size'] for r in rows] == [5, 40]
    assert all(r['num_sets'] == 50 for r in rows)
    with open(tmp_path / 'run' / 'results.json') as f:
        assert json.load(f)['per_size'] == rows
    printed = capsys.readouterr().out
    assert '| set size | accuracy (%) |' in printed
    assert 'MAE' in printed

    # Rerunning resumes the finished run: no training, same results.
    again = run(tmp_path, 'digit_sum_text', '--steps', '60', '--num-train',
                '2000', '--test-sizes', '5', '40', '--test-per-size', '50')
    assert again.results['per_size'] == rows
    for a, b in zip(outcome.models['model'].parameters(),
                    again.models['model'].parameters()):
        assert torch.equal(a, b)
    # Test settings are no training settings: a finished run evaluates on
    # the new ones without training again.
    wider = run(tmp_path, 'digit_sum_text', '--steps', '60', '--num-train',
                '2000', '--test-sizes', '5', '40', '60', '--test-per-size',
                '10')
    assert [r['size'] for r in wider.results['per_size']] == [5, 40, 60]
    assert wider.results['final_train_loss'] == \
        outcome.results['final_train_loss']
    # Other training settings on the same directory are refused unless
    # --fresh.
    with pytest.raises(ValueError, match='num_train'):
        run(tmp_path, 'digit_sum_text', '--steps', '60', '--num-train',
            '1000')
    run(tmp_path, 'digit_sum_text', '--steps', '10', '--num-train', '1000',
        '--test-sizes', '5', '--test-per-size', '5', '--fresh')


def test_digit_sum_text_trained_model_counts_exactly(tmp_path):
    # Enough steps for the linear-in-counts solution: exact on sets ten
    # times larger than any training set.
    outcome = run(tmp_path, 'digit_sum_text', '--steps', '400',
                  '--num-train', '5000', '--test-sizes', '100',
                  '--test-per-size', '100', '--log-every', '100')
    assert outcome.results['per_size'][0]['accuracy'] >= 0.99


def test_digit_sum_images_with_plot(tmp_path):
    outcome = main([
        'digit_sum_images', '--out',
        str(tmp_path / 'run'), '--data-root',
        str(tmp_path / 'data'), '--no-progress', '--log-every', '10',
        '--steps', '150', '--lr', '1e-2', '--num-train', '500',
        '--train-max-size', '3', '--test-sizes', '1', '3',
        '--test-per-size', '40', '--hidden', '32', '--dropout', '0'
    ])
    assert_loss_falls(losses(tmp_path), 0.6)
    results = outcome.results
    p = results['per_digit_accuracy']
    assert 0.2 < p <= 1.0  # learnt from sums alone; chance is 0.1
    for row in results['per_size']:
        assert row['p_to_the_n'] == pytest.approx(p**row['size'])
    png = tmp_path / 'run' / 'accuracy_vs_size.png'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_digit_sum_images_from_local_mnist(tmp_path):
    fake_mnist(tmp_path / 'mnist', num_train=30, num_test=20)
    outcome = run(tmp_path, 'digit_sum_images', '--source', 'mnist',
                  '--mnist-root', str(tmp_path / 'mnist'), '--steps', '10',
                  '--num-train', '40', '--test-sizes', '2',
                  '--test-per-size', '5', '--hidden', '8',
                  '--batch-size', '8')
    assert outcome.models['model'].phi[0].in_channels == 784
    assert outcome.results['config']['source'] == 'mnist'


def test_set_anomaly(tmp_path):
    outcome = run(tmp_path, 'set_anomaly', '--steps', '100', '--lr', '1e-2',
                  '--num-train', '300', '--num-test', '50', '--hidden', '32')
    assert_loss_falls(losses(tmp_path), 0.7)
    assert outcome.models['model'].equivariant.tied
    assert outcome.results['chance'] == 1 / 16
    # Evaluated 5 times during training, and better than chance by then.
    assert len(outcome.results['evals']) == 5
    assert outcome.results['accuracy'] > 0.2


def test_set_log_softmax_normalises_within_sets():
    scores = torch.tensor([1.0, 2.0, 3.0, 100.0, -5.0])
    batch = torch.tensor([0, 0, 0, 1, 1])
    log_p = set_log_softmax(scores, batch, 2)
    assert torch.allclose(log_p[:3], torch.log_softmax(scores[:3], 0))
    assert torch.allclose(log_p[3:], torch.log_softmax(scores[3:], 0))


def test_population_statistics(tmp_path):
    outcome = run(tmp_path, 'population_statistics', '--steps', '60',
                  '--train-sizes', '16', '8', '--num-test', '16',
                  '--min-size', '20', '--max-size', '30', '--batch-size',
                  '8', '--lr', '1e-2')
    rows = outcome.results['per_train_size']
    assert [r['num_train_sets'] for r in rows] == [8, 16]
    assert sorted(outcome.models) == ['n16', 'n8']
    for n in (8, 16):
        assert_loss_falls(losses(tmp_path, f'run/n{n}'), 0.5)
        assert os.path.isfile(tmp_path / 'run' / f'n{n}' / 'checkpoint.pt')
    # Far better than predicting the mean.
    variance = outcome.results['test_target_variance']
    assert max(r['test_mse'] for r in rows) < 0.5 * variance
    assert 0 < outcome.results['plug_in_mse'] < variance


def test_plug_in_estimate_is_consistent(tmp_path):
    small = PopulationStatistics(str(tmp_path), task='correlation',
                                 num_sets=8, min_size=10, max_size=10,
                                 dim=4)
    large = PopulationStatistics(str(tmp_path), task='correlation',
                                 num_sets=8, min_size=5000, max_size=5000,
                                 dim=4)
    # Its error shrinks like 1 / M with the set size M.
    assert plug_in_mse(large) < 1e-3 < plug_in_mse(small)


@pytest.mark.parametrize('argv', [['--help'], ['digit_sum_text', '--help'],
                                  ['digit_sum_images', '--help'],
                                  ['population_statistics', '--help'],
                                  ['set_anomaly', '--help']])
def test_help_pages_render(argv, capsys):
    from torch_geometric_deepsets.experiments.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith('usage:') and '%%' not in out
