r"""The paper's experiments, ``examples/{digit_sum_text, digit_sum_images,
population_statistics, set_anomaly}.py``, end to end on tiny data."""
import json

import pytest
import torch

from tests.example_scripts import assert_reloads, load
from tests.fake_datasets import fake_mnist
from torch_geometric_deepsets.datasets import PopulationStatistics

pytest.importorskip('lightning')

SCRIPTS = ['digit_sum_text', 'digit_sum_images', 'population_statistics',
           'set_anomaly']


def run(tmp_path, name, *extra, out='run', plot=False):
    argv = ['--out', str(tmp_path / out), '--data-root',
            str(tmp_path / 'data'), '--no-progress', '--log-every', '5',
            '--threads', '1', *extra] + ([] if plot else ['--no-plot'])
    return load(name).main(argv)


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    assert len(data) > 5000  # axes, a curve and labels, not an empty canvas


def epoch_losses(outcome_or_history):
    history = outcome_or_history.results['history'] if hasattr(
        outcome_or_history, 'results') else outcome_or_history
    return [h['train_loss_epoch'] for h in history if 'train_loss_epoch' in h]


def assert_loss_falls(losses, factor):
    assert len(losses) >= 2
    assert losses[-1] < factor * losses[0], losses


@pytest.mark.slow
def test_digit_sum_text(tmp_path, capsys):
    outcome = run(tmp_path, 'digit_sum_text', '--max-steps', '60',
                  '--num-train', '2000', '--test-sizes', '5', '40',
                  '--test-per-size', '50', plot=True)
    assert_loss_falls(epoch_losses(outcome), 0.5)
    assert outcome.results['plot'] == str(tmp_path / 'run' /
                                          'accuracy_vs_size.png')
    assert_png(tmp_path / 'run' / 'accuracy_vs_size.png')
    rows = outcome.results['per_size']
    assert [r['size'] for r in rows] == [5, 40]
    assert all(r['num_sets'] == 50 for r in rows)
    with open(tmp_path / 'run' / 'results.json') as f:
        assert json.load(f)['per_size'] == rows
    printed = capsys.readouterr().out
    assert '| set size | accuracy (%) |' in printed
    # One line per epoch (2000 sets in batches of 128: 15 steps an epoch).
    assert [line.split(':')[0] for line in printed.splitlines()
            if line.startswith('epoch ')] == [
                'epoch 0 step 15', 'epoch 1 step 30', 'epoch 2 step 45',
                'epoch 3 step 60']
    # The run records the model's widths, and its checkpoint rebuilds it.
    hparams = json.loads((tmp_path / 'run' / 'results.json').read_text())[
        'hparams']
    assert hparams['model'] == 'digit_sum_text:build_model'
    assert hparams['model_kwargs'] == {'embedding_dim': 100, 'hidden': 30}
    assert_reloads(tmp_path / 'run' / 'checkpoints' / 'last.ckpt',
                   outcome.models['model'])


@pytest.mark.slow
def test_digit_sum_text_trained_model_counts_exactly(tmp_path):
    # Enough steps for the linear-in-counts solution: exact on sets ten
    # times larger than any training set.
    outcome = run(tmp_path, 'digit_sum_text', '--max-steps', '400',
                  '--num-train', '5000', '--test-sizes', '100',
                  '--test-per-size', '100', '--log-every', '100')
    assert outcome.results['per_size'][0]['accuracy'] >= 0.99


@pytest.mark.slow
def test_digit_sum_images_with_plot(tmp_path):
    # Dropout as in the default model, so that reading an image in training
    # mode would show below. A 32-wide phi with dropout 0.5 barely learns in
    # a test's budget (p = 0.20 after 150 steps on 500 sets); 128 wide on
    # 2,000 sets reads 75-85 % of the images right after 400 steps (seeds
    # 0-2) in the same time.
    outcome = load('digit_sum_images').main([
        '--out', str(tmp_path / 'run'), '--data-root',
        str(tmp_path / 'data'), '--no-progress', '--log-every', '10',
        '--threads', '1', '--max-steps', '400', '--lr', '1e-2',
        '--num-train', '2000', '--train-max-size', '3', '--test-sizes', '1',
        '3', '--test-per-size', '40', '--hidden', '128', '--dropout', '0.5'
    ])
    assert_loss_falls(epoch_losses(outcome), 0.35)
    results = outcome.results
    p = results['per_digit_accuracy']
    assert 0.5 < p <= 1.0  # learnt from sums alone; chance is 0.1
    for row in results['per_size']:
        assert row['p_to_the_n'] == pytest.approx(p**row['size'])
    # A set of one is summed exactly iff its image is read right (both in
    # eval mode: dropout in one of them would break this).
    single = results['per_size'][0]
    assert single['size'] == 1
    assert single['accuracy'] == single['all_digits_right']
    # The validation metrics were recorded during training.
    assert any('val_mae' in h for h in results['history'])
    png = tmp_path / 'run' / 'accuracy_vs_size.png'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.slow
def test_digit_sum_images_from_local_mnist(tmp_path):
    fake_mnist(tmp_path / 'mnist', num_train=30, num_test=20)
    outcome = run(tmp_path, 'digit_sum_images', '--source', 'mnist',
                  '--mnist-root', str(tmp_path / 'mnist'), '--max-steps',
                  '10', '--num-train', '40', '--test-sizes', '2',
                  '--test-per-size', '5', '--hidden', '8', '--batch-size',
                  '8')
    assert outcome.models['model'].phi[0].in_channels == 784
    assert outcome.results['steps'] == 10
    assert outcome.results['hparams']['model_kwargs']['hidden'] == 8
    assert_reloads(tmp_path / 'run' / 'checkpoints' / 'last.ckpt',
                   outcome.models['model'])


@pytest.mark.slow
def test_set_anomaly(tmp_path):
    outcome = run(tmp_path, 'set_anomaly', '--max-steps', '100', '--lr',
                  '1e-2', '--num-train', '300', '--num-test', '50',
                  '--hidden', '32')
    assert outcome.models['model'].equivariant.tied
    assert outcome.results['chance'] == 1 / 16
    # Evaluated 5 times during training, and better than chance by then.
    evals = outcome.results['evals']
    assert [e['step'] for e in evals] == [20, 40, 60, 80, 100]
    assert outcome.results['accuracy'] > 0.2
    # The final evaluation of the script agrees with Lightning's last one.
    assert outcome.results['accuracy'] == pytest.approx(evals[-1]['accuracy'])
    # The script's own task class comes back from the checkpoint.
    task = assert_reloads(tmp_path / 'run' / 'checkpoints' / 'last.ckpt',
                          outcome.models['model'])
    assert type(task).__name__ == 'AnomalyTask' and task.noise == 0.1
    assert task.hparams.task == 'classification'


def test_set_log_softmax_normalises_within_sets():
    set_log_softmax = load('set_anomaly').set_log_softmax
    scores = torch.tensor([1.0, 2.0, 3.0, 100.0, -5.0])
    batch = torch.tensor([0, 0, 0, 1, 1])
    log_p = set_log_softmax(scores, batch, 2)
    assert torch.allclose(log_p[:3], torch.log_softmax(scores[:3], 0))
    assert torch.allclose(log_p[3:], torch.log_softmax(scores[3:], 0))


@pytest.mark.slow
def test_population_statistics(tmp_path):
    outcome = run(tmp_path, 'population_statistics', '--max-steps', '60',
                  '--train-sizes', '16', '8', '--num-test', '16',
                  '--min-size', '20', '--max-size', '30', '--batch-size',
                  '8', '--lr', '1e-2', plot=True)
    rows = outcome.results['per_train_size']
    assert_png(tmp_path / 'run' / 'mse_vs_train_size_rotation.png')
    assert [r['num_train_sets'] for r in rows] == [8, 16]
    assert sorted(outcome.models) == ['n16', 'n8']
    for n in (8, 16):
        task = assert_reloads(tmp_path / 'run' / f'n{n}' / 'checkpoints' /
                              'last.ckpt', outcome.models[f'n{n}'])
        assert task.hparams.target_mean == \
            outcome.results['hparams'][f'n{n}']['target_mean']
    # Far better than predicting the mean.
    variance = outcome.results['test_target_variance']
    assert max(r['test_mse'] for r in rows) < 0.5 * variance
    assert 0 < outcome.results['plug_in_mse'] < variance


def test_plug_in_estimate_is_consistent(tmp_path):
    plug_in_mse = load('population_statistics').plug_in_mse
    small = PopulationStatistics(str(tmp_path), task='correlation',
                                 num_sets=8, min_size=10, max_size=10,
                                 dim=4)
    large = PopulationStatistics(str(tmp_path), task='correlation',
                                 num_sets=8, min_size=5000, max_size=5000,
                                 dim=4)
    # Its error shrinks like 1 / M with the set size M.
    assert plug_in_mse(large) < 1e-3 < plug_in_mse(small)


@pytest.mark.parametrize('name', SCRIPTS)
def test_help_pages_render(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load(name).main(['--help'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith('usage:') and '%%' not in out
    for option in ('--max-steps', '--precision', '--devices', '--strategy',
                   '--num-nodes', '--ckpt-path', '--deterministic'):
        assert option in out, option
