r"""End-to-end runs of ``examples/gnn_readout.py`` and
``examples/modelnet.py`` on small offline data."""
import importlib.util
import json
import os.path as osp
import sys

import pytest
import torch

import torch_geometric.transforms as T
from tests.fake_datasets import write_modelnet
from torch_geometric.data import Batch
from torch_geometric.datasets import ModelNet
from torch_geometric_deepsets import DeepSetsPointCloud, RandomAxisScale, ToSet
from torch_geometric_deepsets.training import load_checkpoint

EXAMPLES = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                    'examples')


def load_example(name):
    spec = importlib.util.spec_from_file_location(
        f'examples_{name}', osp.join(EXAMPLES, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _keep_threads():
    # The examples' --threads sets a process-wide torch setting.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


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


def test_gnn_readout_example_deep_sets_beats_add_and_max(tmp_path, capsys):
    gnn_readout = load_example('gnn_readout')
    out = tmp_path / 'readout.json'
    results = gnn_readout.main([
        '--num-train', '400', '--num-test', '200', '--epochs', '10',
        '--batch-size', '32', '--threads', '1', '--json', str(out),
        '--no-progress'
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
    table = capsys.readouterr().out.splitlines()
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


def test_modelnet_example_one_epoch_end_to_end(tmp_path, monkeypatch):
    modelnet = load_example('modelnet')
    monkeypatch.setattr(ModelNet, 'download', lambda self: pytest.fail(
        'ModelNet tried to download'))
    root, out = str(tmp_path / 'ModelNet40'), str(tmp_path / 'run')
    write_modelnet(root, '40')
    args = ['--root', root, '--num-points', '32', '--hidden', '16',
            '--epochs', '1', '--batch-size', '8', '--out', out,
            '--threads', '1']
    results = modelnet.main(args)

    # One epoch of 40 objects in batches of 8, evaluated once.
    metrics = json.loads(open(osp.join(out, 'metrics.json')).read())
    assert metrics['step'] == 5
    assert [e['step'] for e in metrics['evals']] == [5]
    assert results['epochs'] == [{'epoch': 1,
                                  'test_acc': results['test_acc']}]
    assert 0.0 <= results['test_acc'] <= 1.0
    with open(results['plot'], 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'

    # The checkpoint holds the trained model: reloaded, it reproduces the
    # reported accuracy on the same (fixed) test clouds.
    state = load_checkpoint(results['checkpoint'])
    assert state['step'] == 5
    model = DeepSetsPointCloud(3, 40, hidden_channels=16)
    model.load_state_dict(state['model'])
    _, test_clouds = modelnet.load_datasets(root, '40', 32, seed=0)
    assert modelnet.accuracy(model, test_clouds, 8, torch.device('cpu')) \
        == results['test_acc']

    # Running the same command again resumes at the end: nothing retrains.
    again = modelnet.main(args + ['--no-progress'])
    assert again['test_acc'] == results['test_acc']
    assert load_checkpoint(results['checkpoint'])['step'] == 5
