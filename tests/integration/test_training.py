r"""Training lives in ``examples/`` on Lightning: the package imports without
it, and ``examples/set_task/`` (the one LightningModule for set tasks, its
data module and trainer options) does what the examples rely on."""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.example_scripts import ROOT, load, start, stop
from torch_geometric.data import Batch, Data, InMemoryDataset
from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsEquivariant,
    DeepSetsInvariant,
    DeepSetsPointCloud,
)

L = pytest.importorskip('lightning.pytorch')
set_task = load('set_task')


class RandomSets(InMemoryDataset):
    r"""Sets of 3-d points whose target is the sum of all coordinates (or,
    with :obj:`classes`, whether it is positive)."""
    def __init__(self, num_sets=120, seed=0, classes=False):
        super().__init__(None, log=False)
        gen = torch.Generator().manual_seed(seed)
        data_list = []
        for _ in range(num_sets):
            n = int(torch.randint(1, 6, (1, ), generator=gen))
            x = torch.randn(n, 3, generator=gen)
            y = (x.sum() > 0).long() if classes else x.sum()
            data_list.append(Data(x=x, y=y.view(1), tag=x[:, :1] * 2))
        self.data, self.slices = self.collate(data_list)


def options(tmp_path, *extra):
    parser = argparse.ArgumentParser()
    set_task.add_arguments(parser, 'test', max_steps=10, batch_size=8,
                           lr=1e-2)
    args = parser.parse_args(['--out', str(tmp_path), '--no-progress',
                              '--log-every', '1', *extra])
    return parser, args


# The package without Lightning ###############################################

BLOCK_LIGHTNING = '''
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('lightning', 'pytorch_lightning'):
            raise ImportError(f'{name} is blocked')
sys.meta_path.insert(0, Block())
import torch_geometric_deepsets as tgd
model = tgd.DeepSetsInvariant(phi=[2, 4], rho=[4, 1])
import torch
print(tuple(model(torch.randn(5, 2), torch.tensor([0, 0, 1, 1, 2])).shape))
print(sorted(m for m in sys.modules if m.startswith('torch_geometric_deep')))
print([m for m in sys.modules
       if m.split('.')[0] in ('lightning', 'pytorch_lightning')])
'''


@pytest.mark.slow
def test_package_imports_and_runs_without_lightning():
    out = subprocess.run([sys.executable, '-c', BLOCK_LIGHTNING], cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         check=True).stdout.splitlines()
    assert out[0] == '(3, 1)'
    modules = eval(out[1])
    assert not {'torch_geometric_deepsets.training',
                'torch_geometric_deepsets.runtime',
                'torch_geometric_deepsets.experiments'} & set(modules)
    assert 'torch_geometric_deepsets.datasets' in modules
    assert out[2] == '[]'


@pytest.mark.slow
def test_the_block_really_blocks():
    # The hook of the test above must stop an import of Lightning.
    code = BLOCK_LIGHTNING.split('import torch_geometric_deepsets')[0] + \
        'import lightning\n'
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and 'lightning is blocked' in proc.stderr


# Batches #####################################################################


def test_set_loader_matches_pyg_collation():
    dataset = RandomSets(50)
    loader = set_task.SetLoader(dataset, batch_size=7, shuffle=True, seed=1)
    loader.sampler.set_epoch(2)
    order = list(loader.sampler)
    batches = list(loader)
    assert len(batches) == len(loader) == 8  # ceil(50 / 7)
    for i, batch in enumerate(batches):
        chunk = order[7 * i:7 * i + 7]
        ref = Batch.from_data_list([dataset[j] for j in chunk])
        for key in ('x', 'y', 'tag', 'batch', 'ptr'):
            assert torch.equal(batch[key], ref[key]), key
        assert batch.num_graphs == len(chunk)

    # Subsets (index_select, and a slice, whose indices are a range) hold
    # their own sets only.
    subset = dataset[torch.tensor([4, 9, 1])]
    batch = next(iter(set_task.SetLoader(subset, batch_size=3)))
    ref = Batch.from_data_list([dataset[4], dataset[9], dataset[1]])
    assert torch.equal(batch.x, ref.x) and torch.equal(batch.y, ref.y)
    batch = next(iter(set_task.SetLoader(dataset[5:9], batch_size=10)))
    ref = Batch.from_data_list([dataset[i] for i in range(5, 9)])
    for key in ('x', 'y', 'tag', 'batch', 'ptr'):
        assert torch.equal(batch[key], ref[key]), key

    # With a transform, PyG's collation runs instead (same result).
    dataset.transform = lambda data: data
    batch = next(iter(set_task.SetLoader(dataset, batch_size=4)))
    ref = Batch.from_data_list([dataset[i] for i in range(4)])
    assert torch.equal(batch.x, ref.x) and torch.equal(batch.ptr, ref.ptr)


def test_set_loader_order_shards_and_resume_state():
    dataset = RandomSets(40)

    def order(**kwargs):
        loader = set_task.SetLoader(dataset, 4, shuffle=True, **kwargs)
        loader.sampler.set_epoch(kwargs.pop('epoch', 0))
        return [b.y.view(-1).tolist() for b in loader]

    epoch0 = order(seed=5)
    assert sorted(sum(epoch0, [])) == sorted(dataset.y.tolist())
    assert order(seed=5) == epoch0 and order(seed=6) != epoch0
    loader = set_task.SetLoader(dataset, 4, shuffle=True, seed=5)
    loader.sampler.set_epoch(1)
    epoch1 = [b.y.view(-1).tolist() for b in loader]
    assert epoch1 != epoch0

    # Two replicas split every epoch into disjoint halves.
    shards = [sum(order(seed=5, num_replicas=2, rank=r), []) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == sorted(dataset.y.tolist())
    assert not set(shards[0]) & set(shards[1])

    # The state after 3 batches resumes with the 4th, in a new loader, and
    # only in the epoch it was taken in.
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.state_dict()
    assert state == {'epoch': 1, 'batches': 3}
    resumed = set_task.SetLoader(dataset, 4, shuffle=True, seed=5)
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(1)
    rest = [b.y.view(-1).tolist() for b in resumed]
    assert rest == epoch1[3:]
    assert resumed.state_dict() == {'epoch': 1, 'batches': 10}
    assert len(resumed) == 10  # Lightning counts the whole epoch
    ended = set_task.SetLoader(dataset, 4, shuffle=True, seed=5)
    ended.load_state_dict({'epoch': 1, 'batches': 10})
    ended.sampler.set_epoch(2)  # the checkpoint closed epoch 1
    assert len(list(ended)) == 10

    # Iterating leaves the global RNG alone; workers give the same batches.
    state = torch.get_rng_state()
    list(loader)
    assert torch.equal(state, torch.get_rng_state())
    workers = set_task.SetLoader(dataset, 4, shuffle=True, seed=5,
                                 num_workers=1)
    workers.sampler.set_epoch(1)
    assert [b.y.view(-1).tolist() for b in workers] == epoch1


def test_data_module_checks_batch_size(tmp_path):
    with pytest.raises(ValueError, match=r"'batch_size' \(50\) is larger "
                       r"than the training set \(40 sets\)"):
        set_task.SetDataModule(RandomSets(40), batch_size=50)
    parser, args = options(tmp_path, '--batch-size', '50')
    with pytest.raises(SystemExit):
        set_task.data_module(args, parser, RandomSets(40))


# The task ####################################################################


def test_loss_and_metrics_by_hand():
    batch = Batch.from_data_list([
        Data(x=torch.zeros(2, 1), y=torch.tensor([10.0])),
        Data(x=torch.zeros(1, 1), y=torch.tensor([4.0])),
    ])
    task = set_task.SetTask(torch.nn.Identity(), loss='l1', target_mean=6.0,
                            target_std=2.0)
    out = torch.tensor([1.0, -2.0])  # standardised: 8 and 2
    # Targets standardised: (10 - 6) / 2 = 2 and (4 - 6) / 2 = -1.
    assert float(task.loss(out, batch)) == pytest.approx((1 + 1) / 2)
    metrics = task.metrics(out, batch)
    assert float(metrics['mae']) == pytest.approx((2 + 2) / 2)
    assert float(metrics['mse']) == pytest.approx((4 + 4) / 2)
    assert torch.equal(task.unscale(out), torch.tensor([8.0, 2.0]))

    labels = Batch.from_data_list([Data(x=torch.zeros(1, 1), y=torch.tensor(
        [c])) for c in (0, 2, 1)])
    clf = set_task.SetTask(torch.nn.Identity(), task='classification')
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0],
                           [1.0, 0.0, 0.0]])
    assert float(clf.metrics(logits, labels)['acc']) == pytest.approx(2 / 3)
    assert float(clf.loss(logits, labels)) == pytest.approx(
        float(F.cross_entropy(logits, labels.y)))


@pytest.mark.parametrize('kwargs,match', [
    ({'task': 'ranking'}, "'task' must be"),
    ({'loss': 'hinge'}, "'loss' must be one of"),
    ({'optimizer': 'Adam'}, "'optimizer' must name a torch.optim class"),
    ({'schedule': 'cosine'}, "'schedule' must be one of"),
    ({'lr': 0.0}, "'lr' must be positive"),
    ({'target_std': 0.0}, "'target_std' must be positive"),
])
def test_set_task_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        set_task.SetTask(torch.nn.Identity(), **kwargs)


class Probe(set_task.SetTask):
    r"""Records the dtype of the model's output and the learning rate of
    every step."""
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.seen = (self(batch).dtype,
                     self.trainer.optimizers[0].param_groups[0]['lr'])
        self.lrs = getattr(self, 'lrs', []) + [self.seen[1]]
        return loss


def sum_model():
    return DeepSetsInvariant(phi=[3, 8], rho=[8, 1])


@pytest.mark.slow
def test_precision_schedule_and_gradient_clipping_reach_the_loop(tmp_path):
    parser, args = options(tmp_path / 'a', '--precision', 'bf16-mixed',
                           '--max-steps', '5')
    task = Probe(sum_model(), lr=0.1, schedule='one_cycle')
    trainer = set_task.build_trainer(args, parser)
    set_task.fit(trainer, task,
                 set_task.SetDataModule(RandomSets(80), batch_size=8), args)
    dtype, lr = task.seen
    assert dtype == torch.bfloat16  # autocast ran the model in bf16
    # The last step of a one-cycle schedule runs at its floor.
    assert lr == pytest.approx(0.1 / 25 / 1e4)

    # SGD with lr 1 and the gradient norm clipped to 1e-3 moves the
    # parameters by at most 1e-3 in one step.
    parser, args = options(tmp_path / 'b', '--gradient-clip-val', '1e-3',
                           '--max-steps', '1')
    set_task.seed_everything(args)
    task = set_task.SetTask(sum_model(), optimizer='sgd', lr=1.0)
    before = torch.cat([p.detach().flatten().clone()
                        for p in task.parameters()])
    trainer = set_task.build_trainer(args, parser)
    set_task.fit(trainer, task,
                 set_task.SetDataModule(RandomSets(80), batch_size=8), args)
    after = torch.cat([p.detach().flatten() for p in task.parameters()])
    assert 0 < float((after - before).norm()) <= 1e-3 + 1e-7


def one_cycle(step, total, up, peak=0.1):
    r"""The one-cycle learning rate by hand: cosine from peak / 25 up to the
    peak over :obj:`up` steps, then cosine down to peak / 25 / 1e4 at the
    last step."""
    low, floor = peak / 25, peak / 25 / 1e4
    if step <= up:
        return low + (peak - low) * (1 - math.cos(math.pi * step / up)) / 2
    t = (step - up) / (total - 1 - up)
    return floor + (peak - floor) * (1 + math.cos(math.pi * t)) / 2


@pytest.mark.slow
@pytest.mark.parametrize('steps,up', [(20, 2), (10, 1), (4, 1)])
def test_one_cycle_schedule_by_hand(tmp_path, steps, up):
    # 10 steps: a warm-up of exactly one step, where torch's OneCycleLR with
    # pct_start=0.1 divides by zero; 4 steps: it would skip the warm-up.
    parser, args = options(tmp_path, '--max-steps', str(steps))
    task = Probe(sum_model(), lr=0.1, schedule='one_cycle')
    set_task.fit(set_task.build_trainer(args, parser), task,
                 set_task.SetDataModule(RandomSets(80), batch_size=8), args)
    assert task.lrs == pytest.approx([one_cycle(s, steps, up)
                                      for s in range(steps)])


@pytest.mark.slow
def test_one_cycle_stretches_when_a_run_is_extended(tmp_path):
    parser, args = options(tmp_path, '--max-steps', '20')
    first = Probe(sum_model(), lr=0.1, schedule='one_cycle')
    set_task.fit(set_task.build_trainer(args, parser), first,
                 set_task.SetDataModule(RandomSets(80), batch_size=8), args)
    parser, args = options(tmp_path, '--max-steps', '30', '--ckpt-path',
                           'last')
    more = Probe(sum_model(), lr=0.1, schedule='one_cycle')
    set_task.fit(set_task.build_trainer(args, parser), more,
                 set_task.SetDataModule(RandomSets(80), batch_size=8), args)
    # Steps 20-29 follow the 30-step schedule (warm-up: 3 steps).
    assert more.lrs == pytest.approx([one_cycle(s, 30, 3)
                                      for s in range(20, 30)])


class Flat(set_task.SetTask):
    def metrics(self, out, batch):
        return {'mae': torch.tensor(1.0)}  # never improves


@pytest.mark.slow
def test_early_stopping_after_patience(tmp_path):
    parser, args = options(tmp_path, '--max-steps', '-1', '--max-epochs',
                           '20', '--early-stopping', '2')
    trainer = set_task.build_trainer(args, parser, monitor='val_mae')
    data = set_task.SetDataModule(RandomSets(40), RandomSets(8, seed=1),
                                  batch_size=8)
    set_task.fit(trainer, Flat(sum_model()), data, args)
    # The first validation sets the best, two more without improvement.
    assert trainer.current_epoch == 3
    parser, args = options(tmp_path, '--early-stopping', '2')
    with pytest.raises(SystemExit):
        set_task.build_trainer(args, parser)  # nothing monitored


@pytest.mark.slow
@pytest.mark.parametrize('make', [
    lambda: DeepSetsInvariant(phi=[3, 8, 8], rho=[16, 4], aggr=['sum', 'max']),
    lambda: DeepSetsEquivariant([3, 8, 2], aggr='max', readout='mean'),
    lambda: DeepSetsEquivariant([3, 8, 2], tied=True, readout='sum'),
    lambda: DeepSetsPointCloud(3, num_classes=4, hidden_channels=8),
])
def test_checkpoint_reloads_the_trained_model(tmp_path, make):
    parser, args = options(tmp_path, '--max-steps', '3')
    set_task.seed_everything(args)
    task = set_task.SetTask(make(), task='classification')
    ys = RandomSets(40, classes=True)
    data = set_task.SetDataModule(ys, batch_size=8)
    trainer = set_task.build_trainer(args, parser)
    set_task.fit(trainer, task, data, args)
    path = tmp_path / 'checkpoints' / 'last.ckpt'
    torch.manual_seed(1)
    again = set_task.SetTask.load_from_checkpoint(path, model=make())
    assert again.hparams.task == 'classification'
    batch = next(iter(set_task.SetLoader(ys, 10)))
    task.eval(), again.eval()
    assert torch.equal(task(batch), again(batch))


@pytest.mark.slow
def test_conditional_and_layer_models_through_a_subclass(tmp_path):
    class Conditional(set_task.SetTask):
        def forward(self, batch):
            context = torch.ones(batch.num_graphs, 2)
            return self.model(batch.x, context, batch.batch,
                              dim_size=batch.num_graphs).squeeze(-1)

    parser, args = options(tmp_path, '--max-steps', '3')
    model = DeepSetsConditional(phi=[3, 8], rho=[8, 1], context_channels=2,
                                fusion='film')
    task = Conditional(model)
    trainer = set_task.build_trainer(args, parser)
    set_task.fit(trainer, task,
                 set_task.SetDataModule(RandomSets(40), batch_size=8), args)
    assert trainer.global_step == 3


# Runs of a real script #######################################################

TEXT = ['--num-train', '600', '--batch-size', '16', '--test-sizes', '5',
        '--test-per-size', '20', '--no-plot', '--log-every', '5',
        '--threads', '1']


def text_args(tmp_path, out, *extra):
    return [*TEXT, '--data-root', str(tmp_path / 'data'), '--out',
            str(tmp_path / out), '--no-progress', *extra]


@pytest.mark.slow
def test_extending_a_finished_run(tmp_path):
    text = load('digit_sum_text')
    first = text.main(text_args(tmp_path, 'run', '--max-steps', '20'))
    assert first.results['steps'] == 20
    more = text.main(text_args(tmp_path, 'run', '--max-steps', '30',
                               '--ckpt-path', 'last'))
    assert more.results['steps'] == 30
    # Not retrained from scratch: the 30-step run of the resumed model is not
    # a fresh 30-step run.
    fresh = text.main(text_args(tmp_path, 'fresh', '--max-steps', '30'))
    assert fresh.results['per_size'] != more.results['per_size']


@pytest.mark.slow
def test_deterministic_runs_are_identical(tmp_path):
    text = load('digit_sum_text')
    runs = [text.main(text_args(tmp_path, f'run{i}', '--max-steps', '12',
                                '--seed', '3', '--deterministic'))
            for i in range(2)]
    a, b = (r.models['model'].state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].results['per_size'] == runs[1].results['per_size']
    other = text.main(text_args(tmp_path, 'run3', '--max-steps', '12',
                                '--seed', '4', '--deterministic'))
    c = other.models['model'].state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_missing_cuda_is_an_argparse_error(tmp_path, capsys):
    text = load('digit_sum_text')
    # More CUDA devices than this machine has: none on a CPU build.
    wanted = torch.cuda.device_count() + 1
    with pytest.raises(SystemExit) as exit_info:
        text.main(text_args(tmp_path, 'run', '--accelerator', 'cuda',
                            '--devices', str(wanted)))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('usage:')
    assert ('not available' in err or 'CUDA' in err) and \
        'Traceback' not in err


def read_lines_until(proc, marker, timeout=180):
    lines = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if marker in line or time.monotonic() > deadline:
            break
    return lines


@pytest.mark.slow
def test_sigint_saves_and_resumes_to_the_uninterrupted_result(tmp_path):
    # Dropout, so the resumed run also needs the restored random state.
    args = ['--num-train', '300', '--train-max-size', '3', '--hidden', '16',
            '--dropout', '0.5', '--batch-size', '16', '--test-sizes', '2',
            '--test-per-size', '20', '--max-steps', '400', '--no-plot',
            '--no-progress', '--log-every', '5', '--threads', '1',
            '--data-root', str(tmp_path / 'data')]
    proc = start('digit_sum_images.py', [*args, '--out',
                                         str(tmp_path / 'cut')])
    try:
        # Interrupt once training has gone past the first epoch (18 steps).
        seen = read_lines_until(proc, 'epoch 1 step')
        assert any('epoch 1 step' in line for line in seen), ''.join(seen)
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        out, _ = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 1, out
    hints = [line for line in out.splitlines() if 'Resume with:' in line]
    assert len(hints) == 1, out
    assert 'Traceback' not in out
    ckpt = tmp_path / 'cut' / 'checkpoints' / 'last.ckpt'
    assert hints[0].startswith('Stopped at step ') and str(ckpt) in hints[0]
    assert hints[0].endswith('--ckpt-path last')
    stopped = torch.load(ckpt, weights_only=False)['global_step']
    assert 18 <= stopped < 400

    resumed = load('digit_sum_images').main(
        [*args, '--out', str(tmp_path / 'cut'), '--ckpt-path', 'last'])
    straight = load('digit_sum_images').main(
        [*args, '--out', str(tmp_path / 'straight')])
    assert resumed.results['steps'] == straight.results['steps'] == 400
    a = resumed.models['model'].state_dict()
    b = straight.models['model'].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key in ('per_digit_accuracy', 'per_size'):
        assert resumed.results[key] == straight.results[key]
    # The per-epoch lines too, including the mean training loss of the
    # interrupted epoch, which covers its steps before the interrupt.
    assert resumed.results['history'] == straight.results['history']
    with open(tmp_path / 'cut' / 'results.json') as f:
        assert json.load(f)['per_size'] == straight.results['per_size']
    assert math.isfinite(straight.results['per_size'][0]['mae'])
    assert os.path.isfile(tmp_path / 'cut' / 'csv' / 'version_0' /
                          'metrics.csv')


@pytest.mark.slow
def test_epoch_mean_after_resuming_at_an_epoch_end(tmp_path):
    # 80 sets in batches of 8: 10 steps an epoch. The second epoch's mean
    # loss of a run resumed after the first covers the second epoch only.
    def run(out, *extra):
        parser, args = options(tmp_path / out, '--max-steps', '-1', *extra)
        set_task.seed_everything(args)
        trainer = set_task.build_trainer(args, parser)
        set_task.fit(trainer, set_task.SetTask(sum_model()),
                     set_task.SetDataModule(RandomSets(80), batch_size=8),
                     args)
        return set_task.history(trainer)

    straight = run('straight', '--max-epochs', '2')
    run('cut', '--max-epochs', '1')
    resumed = run('cut', '--max-epochs', '2', '--ckpt-path', 'last')
    assert [h['epoch'] for h in straight] == [0, 1]
    assert resumed == straight


# Loading a trained model back ##############################################


def build_sum_model(hidden):
    return DeepSetsInvariant(phi=[3, hidden], rho=[hidden, 1])


@pytest.mark.slow
def test_one_call_rebuilds_the_model_from_a_checkpoint(tmp_path):
    parser, args = options(tmp_path, '--max-steps', '3')
    task = set_task.SetTask(build_sum_model, {'hidden': 5}, lr=0.1,
                            schedule='one_cycle')
    data = set_task.SetDataModule(RandomSets(40), batch_size=8)
    set_task.fit(set_task.build_trainer(args, parser), task, data, args)
    path = tmp_path / 'checkpoints' / 'last.ckpt'

    # Plain tensors and strings: no pickled objects.
    saved = torch.load(path, weights_only=True)
    assert saved['hyper_parameters']['model'] == \
        'tests.integration.test_training:build_sum_model'
    assert saved['hyper_parameters']['model_kwargs'] == {'hidden': 5}
    hparams = (tmp_path / 'csv' / 'version_0' / 'hparams.yaml').read_text()
    assert 'model_kwargs:\n  hidden: 5' in hparams

    again = set_task.SetTask.load_from_checkpoint(path)
    assert type(again) is set_task.SetTask
    assert again.model.phi.out_channels == 5
    batch = next(iter(set_task.SetLoader(RandomSets(10, seed=3), 10)))
    task.eval(), again.eval()
    assert torch.equal(task.predict_step(batch), again.predict_step(batch))


def test_package_models_are_named_by_their_public_path():
    task = set_task.SetTask(DeepSetsPointCloud, dict(
        in_channels=3, num_classes=4, hidden_channels=8),
        task='classification')
    assert task.hparams.model == 'torch_geometric_deepsets:DeepSetsPointCloud'
    assert type(task.model) is DeepSetsPointCloud


@pytest.mark.slow
def test_a_task_given_a_module_asks_for_it_on_load(tmp_path):
    parser, args = options(tmp_path, '--max-steps', '1')
    set_task.fit(set_task.build_trainer(args, parser),
                 set_task.SetTask(sum_model()),
                 set_task.SetDataModule(RandomSets(40), batch_size=8), args)
    with pytest.raises(TypeError, match="pass the model again"):
        set_task.SetTask.load_from_checkpoint(
            tmp_path / 'checkpoints' / 'last.ckpt')


@pytest.mark.parametrize('builder,match', [
    (lambda: None, 'top level of a module'),
    ('no_such_module:f', "cannot import the model builder"),
    ('nocolon', "must be named 'module:name'"),
])
def test_bad_model_builders(builder, match):
    with pytest.raises((ValueError, ImportError), match=match):
        set_task.SetTask(builder)
    with pytest.raises(ValueError, match="'model_kwargs' needs a model "
                       "builder"):
        set_task.SetTask(sum_model(), {'hidden': 3})


@pytest.mark.slow
def test_lightning_manual_optimisation_equals_a_plain_loop(tmp_path):
    L = pytest.importorskip('lightning')
    from tests.example_scripts import load
    example = load('streaming')
    data, y = example.write_sets(str(tmp_path / 'sets.f32'), num_sets=3,
                                 set_size=500)
    torch.manual_seed(0)
    model = example.build_model()
    plain = example.build_model()
    plain.load_state_dict(model.state_dict())
    start = {k: v.clone() for k, v in model.state_dict().items()}

    task = example.StreamedRegression(model, lr=1e-2)
    trainer = L.Trainer(max_epochs=2, accelerator='cpu', logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(task, example.loader(data, y, 500, chunk_size=128))

    # The same steps as a plain optimiser loop over whole sets in memory.
    optimizer = torch.optim.Adam(plain.parameters(), lr=1e-2)
    rows = torch.from_numpy(np.array(data)).view(3, 500, 3)
    for _ in range(2):
        for i in range(3):
            optimizer.zero_grad()
            out = plain(rows[i]).view(-1)
            torch.nn.functional.mse_loss(out, y[i:i + 1]).backward()
            optimizer.step()
    moved = 0.0
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, plain.state_dict()[key],
                                   rtol=1e-4, atol=1e-5, msg=key)
        moved = max(moved, float((value - start[key]).abs().max()))
    assert moved > 1e-3  # the six steps really trained
    del data
