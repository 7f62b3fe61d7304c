r"""End-to-end runs of ``examples/gnn_readout.py`` and
``examples/modelnet.py`` on small offline data."""
import json
import os

import pytest
import torch

import torch_geometric.transforms as T
from tests.example_scripts import assert_reloads
from tests.example_scripts import load as load_example
from torch_geometric.data import Batch
from torch_geometric.datasets import ModelNet
from torch_geometric_deepsets import RandomAxisScale, ToSet
from torch_geometric_deepsets.testing import write_modelnet

pytest.importorskip('lightning')

# examples/gnn_readout.py #####################################################


def test_readout_task_labels_follow_colour_counts():
    gnn_readout = load_example('gnn_readout')
    graphs = gnn_readout.make_dataset(200, seed=3)
    labels = []
    for data in graphs:
        red, blue = int(data.x[:, 0].sum()), int(data.x[:, 1].sum())
        assert int(data.y) == int(abs(red - blue) <= 1)
        assert data.x[:, 2].sum() >= 2  # green nodes pad every graph
        assert data.is_undirected() and not data.has_isolated_nodes()
        labels.append(int(data.y))
    assert 0.35 < sum(labels) / len(labels) < 0.65
    again = gnn_readout.make_dataset(200, seed=3)
    assert all(torch.equal(a.x, b.x) for a, b in zip(graphs, again))


@pytest.mark.slow
def test_gnn_readout_example_deep_sets_beats_add_and_max(tmp_path, capsys):
    gnn_readout = load_example('gnn_readout')
    out = tmp_path / 'readout.json'
    results = gnn_readout.main([
        '--num-train', '400', '--num-test', '200', '--max-epochs', '10',
        '--batch-size', '32', '--threads', '1', '--json', str(out),
        '--no-progress', '--out', str(tmp_path / 'runs')
    ])
    assert set(results) == {'deepsets', 'add', 'max'}
    deep_sets = results['deepsets']
    # End to end: the loss falls and the readout learns the task ...
    assert deep_sets['losses'][-1] < 0.5 * deep_sets['losses'][0]
    assert deep_sets['test_acc'] >= 0.8  # chance: 0.5
    # ... which neither pooling followed by a linear layer does as well.
    for baseline in ('add', 'max'):
        assert deep_sets['test_acc'] >= results[baseline]['test_acc'] + 0.1
    assert json.loads(out.read_text()) == results
    # The script's own task (its model also takes the edges) comes back
    # from the checkpoint, and scores the test graphs as in training.
    from torch_geometric_deepsets.lightning import SetTask, predict
    task = SetTask.load_from_checkpoint(
        tmp_path / 'runs' / 'deepsets' / 'checkpoints' / 'last.ckpt')
    assert type(task).__name__ == 'GraphTask'
    assert task.hparams.model_kwargs['readout'] == 'deepsets'
    pred, batches = predict(
        task, gnn_readout.make_dataset(200, seed=1))
    labels = torch.cat([b.y for b in batches])
    assert float((pred.argmax(-1) == labels).float().mean()) == \
        pytest.approx(deep_sets['test_acc'])
    table = [line for line in capsys.readouterr().out.splitlines()
             if not line.startswith('epoch ')]
    assert table[0].split() == ['readout', 'first', 'loss', 'last', 'loss',
                                'test', 'acc']
    assert table[1].split()[0] == 'deepsets'
    assert float(table[1].split()[-1]) == round(deep_sets['test_acc'], 3)


def test_gnn_readout_classifier_is_a_graph_level_model():
    gnn_readout = load_example('gnn_readout')
    model = gnn_readout.GraphClassifier(4, 16, 2, readout='deepsets').eval()
    graphs = gnn_readout.make_dataset(3, seed=0)
    batch = Batch.from_data_list(graphs)
    out = model(batch.x, batch.edge_index, batch.batch)
    perm = torch.randperm(batch.num_nodes)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel())
    out_perm = model(batch.x[perm], inverse[batch.edge_index],
                     batch.batch[perm])
    assert torch.allclose(out, out_perm, atol=1e-5)
    with pytest.raises(ValueError, match="'readout' must be one of"):
        gnn_readout.GraphClassifier(4, 16, 2, readout='mean')


# examples/modelnet.py ########################################################


def test_modelnet_transforms_are_the_papers_augmentation():
    modelnet = load_example('modelnet')
    steps = modelnet.train_transform(100).transforms
    assert [type(t) for t in steps] == [
        T.RandomRotate, RandomAxisScale, T.SamplePoints, ToSet
    ]
    assert steps[0].degrees == (-18, 18) and steps[0].axis == 2
    assert steps[1].scales == (0.8, 1.25)
    assert steps[2].num == 100
    assert [type(t) for t in modelnet.test_transform(100).transforms] == [
        T.SamplePoints, ToSet
    ]


@pytest.mark.slow
def test_modelnet_example_one_epoch_end_to_end(tmp_path, monkeypatch,
                                              capsys):
    modelnet = load_example('modelnet')
    monkeypatch.setattr(ModelNet, 'download', lambda self: pytest.fail(
        'ModelNet tried to download'))
    root, out = str(tmp_path / 'ModelNet10'), str(tmp_path / 'run')
    write_modelnet(root, '10', per_split=4)
    args = ['--root', root, '--num-points', '32', '--hidden', '16',
            '--max-epochs', '1', '--batch-size', '8', '--out', out,
            '--threads', '1', '--no-progress']
    outcome = modelnet.main(args)
    results = outcome.results

    # ModelNet10 by default; one epoch of 40 objects in batches of 8,
    # evaluated once, with its line in the log.
    assert results['name'] == '10'
    assert results['epochs'] == [{'epoch': 1,
                                  'test_acc': results['test_acc']}]
    assert 0.0 <= results['test_acc'] <= 1.0
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith('epoch ')]
    assert len(lines) == 1 and lines[0].startswith('epoch 0 step 5:')
    assert 'val_acc' in lines[0] and 'train_loss_epoch' in lines[0]
    with open(results['plot'], 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'

    # The checkpoint holds the trained model: reloaded, it reproduces the
    # reported accuracy on the same (fixed) test clouds.
    from torch_geometric_deepsets.lightning import predict
    state = torch.load(results['checkpoint'], weights_only=True)
    assert state['global_step'] == 5
    assert results['hparams']['model_kwargs'] == {
        'in_channels': 3, 'num_classes': 10, 'hidden_channels': 16}
    task = assert_reloads(results['checkpoint'], outcome.models['model'])
    _, test_clouds = modelnet.load_datasets(root, '10', 32, seed=0)
    pred, batches = predict(task, test_clouds)
    labels = torch.cat([b.y for b in batches])
    assert float((pred.argmax(-1) == labels).float().mean()) == \
        pytest.approx(results['test_acc'])

    # Resuming the finished run with one more epoch trains exactly one more.
    again = modelnet.main([*args, '--max-epochs', '2', '--ckpt-path',
                           'last'])
    assert [e['epoch'] for e in again.results['epochs']] == [1, 2]


def test_modelnet_example_rejects_bad_options(tmp_path, capsys):
    modelnet = load_example('modelnet')
    root = str(tmp_path / 'ModelNet10')
    write_modelnet(root, '10', per_split=1)
    with pytest.raises(SystemExit) as exit_info:
        modelnet.main(['--root', root, '--batch-size', '64', '--out',
                       str(tmp_path / 'run'), '--num-points', '8'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--batch-size: 'batch_size' (64) is larger than the training " \
        "set (10 sets)" in err and 'Traceback' not in err
    for bad, message in (
            (['--num-points', '0'], 'must be at least 1 (got 0)'),
            (['--name', '20'], "invalid choice: '20'"),
            (['--weight-decay', '-1'], 'must be non-negative'),
            (['--max-steps', '0'], 'must be at least 1, or -1'),
            (['--max-steps', '-2'], 'must be at least 1, or -1'),
            (['--max-epochs', '0'], 'must be at least 1 (got 0)'),
            (['--seed', '-1'], 'must be in [0, 2**32)'),
            (['--num-workers', '-1'], 'must be at least 0'),
            (['--synthetic', '0'], 'must be at least 1 (got 0)'),
            (['--lr', 'nan'], 'must be positive'),
            (['--batch-size', 'many'], "invalid positive_int value")):
        with pytest.raises(SystemExit) as exit_info:
            modelnet.main(['--root', root, *bad])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and 'Traceback' not in err, (bad, err)


def test_modelnet_without_data_or_network_fails_fast(tmp_path, monkeypatch,
                                                     capsys):
    modelnet = load_example('modelnet')
    monkeypatch.setattr(modelnet, 'reachable', lambda url: False)
    monkeypatch.setattr(ModelNet, 'download', lambda self: pytest.fail(
        'ModelNet tried to download'))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        modelnet.main(['--out', 'run', '--max-epochs', '1'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    # One paragraph after the usage: where the extracted data goes, and the
    # offline route.
    message = err[-1]
    assert message.startswith('modelnet.py: error: ModelNet10 is not in ')
    raw = os.path.join('data', 'ModelNet10', 'raw')
    assert f'into {raw}/' in message
    assert os.path.join(raw, 'bathtub', 'train') in message
    assert '--synthetic' in message and ModelNet.urls['10'] in message
    # Nothing left behind: no data folder, no lock, no run folder.
    assert os.listdir(tmp_path) == []

    # With the data in place, nothing is asked of the network.
    write_modelnet(str(tmp_path / 'data' / 'ModelNet10'), '10', per_split=1)
    assert modelnet.missing_data(str(tmp_path / 'data' / 'ModelNet10')) \
        is None
    monkeypatch.setattr(modelnet, 'reachable', lambda url: pytest.fail(
        'probed the network with the data in place'))
    with pytest.raises(SystemExit):  # batch of 64 > 10 sets: argparse
        modelnet.main(['--out', 'run', '--num-points', '8'])


@pytest.mark.slow
def test_modelnet_offline_route_synthetic(tmp_path, monkeypatch):
    modelnet = load_example('modelnet')
    monkeypatch.setattr(modelnet, 'reachable', lambda url: pytest.fail(
        '--synthetic probed the network'))
    monkeypatch.chdir(tmp_path)
    outcome = modelnet.main([
        '--synthetic', '8', '--num-points', '32', '--hidden', '16',
        '--max-epochs', '2', '--batch-size', '8', '--lr', '3e-3', '--out',
        'run', '--threads', '1', '--no-progress'])
    results = outcome.results
    assert results['dataset'] == 'synthetic'
    assert [e['epoch'] for e in results['epochs']] == [1, 2]
    assert results['hparams']['model_kwargs']['num_classes'] == 4
    assert sorted(os.listdir(tmp_path)) == ['run']  # no data/ folder
    assert_reloads(results['checkpoint'], outcome.models['model'])

    # Four classes, 8 boxes each per split; a class's boxes share their side
    # ratios up to the jitter, and the two splits differ.
    train, test_clouds = modelnet.synthetic_datasets(4, 8, 32, seed=0)
    assert len(train) == len(test_clouds) == 32
    assert train.num_classes == 4
    assert [int(d.y) for d in test_clouds] == sorted([0, 1, 2, 3] * 8)
    assert all(d.x.shape == (32, 3) for d in test_clouds)
    again, _ = modelnet.synthetic_datasets(4, 8, 32, seed=0)
    assert torch.equal(train.get(5).pos, again.get(5).pos)


@pytest.mark.slow
def test_modelnet_max_steps_between_evaluations(tmp_path, monkeypatch):
    # --max-steps ends the run before the first evaluation: the script
    # evaluates the final model itself.
    modelnet = load_example('modelnet')
    monkeypatch.chdir(tmp_path)
    results = modelnet.main([
        '--synthetic', '8', '--num-points', '16', '--hidden', '8',
        '--max-steps', '2', '--batch-size', '8', '--out', 'run',
        '--threads', '1', '--no-progress', '--no-plot']).results
    assert results['epochs'] == [] and 0.0 <= results['test_acc'] <= 1.0
