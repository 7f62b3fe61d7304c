r"""Training on Lightning: the package imports without it, and
:mod:`torch_geometric_deepsets.lightning` with the examples' trainer options
(``examples/set_task.py``) does what the examples rely on."""
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

from tests.example_scripts import ROOT, load, start, stop
from tests.helpers import RandomSets
from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsEquivariant,
    DeepSetsInvariant,
    DeepSetsPointCloud,
)

L = pytest.importorskip('lightning.pytorch')
set_task = load('set_task')
from torch_geometric_deepsets.lightning import (  # noqa: E402
    SetDataModule,
    SetLoader,
    SetTask,
)


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


# Data ########################################################################


def test_data_module_checks_batch_size(tmp_path):
    with pytest.raises(ValueError, match=r"'batch_size' \(50\) is larger "
                       r"than the training set \(40 sets\)"):
        SetDataModule(RandomSets(40), batch_size=50)
    parser, args = options(tmp_path, '--batch-size', '50')
    with pytest.raises(SystemExit):
        set_task.data_module(args, parser, RandomSets(40))


# The task ####################################################################


class Probe(SetTask):
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
                 SetDataModule(RandomSets(80), batch_size=8), args)
    dtype, lr = task.seen
    assert dtype == torch.bfloat16  # autocast ran the model in bf16
    # The last step of a one-cycle schedule runs at its floor.
    assert lr == pytest.approx(0.1 / 25 / 1e4)

    # SGD with lr 1 and the gradient norm clipped to 1e-3 moves the
    # parameters by at most 1e-3 in one step.
    parser, args = options(tmp_path / 'b', '--gradient-clip-val', '1e-3',
                           '--max-steps', '1')
    set_task.seed_everything(args)
    task = SetTask(sum_model(), optimizer='sgd', lr=1.0)
    before = torch.cat([p.detach().flatten().clone()
                        for p in task.parameters()])
    trainer = set_task.build_trainer(args, parser)
    set_task.fit(trainer, task,
                 SetDataModule(RandomSets(80), batch_size=8), args)
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
                 SetDataModule(RandomSets(80), batch_size=8), args)
    assert task.lrs == pytest.approx([one_cycle(s, steps, up)
                                      for s in range(steps)])


@pytest.mark.slow
def test_one_cycle_stretches_when_a_run_is_extended(tmp_path):
    parser, args = options(tmp_path, '--max-steps', '20')
    first = Probe(sum_model(), lr=0.1, schedule='one_cycle')
    set_task.fit(set_task.build_trainer(args, parser), first,
                 SetDataModule(RandomSets(80), batch_size=8), args)
    parser, args = options(tmp_path, '--max-steps', '30', '--ckpt-path',
                           'last')
    more = Probe(sum_model(), lr=0.1, schedule='one_cycle')
    set_task.fit(set_task.build_trainer(args, parser), more,
                 SetDataModule(RandomSets(80), batch_size=8), args)
    # Steps 20-29 follow the 30-step schedule (warm-up: 3 steps).
    assert more.lrs == pytest.approx([one_cycle(s, 30, 3)
                                      for s in range(20, 30)])


class Flat(SetTask):
    def metrics(self, out, batch):
        return {'mae': torch.tensor(1.0)}  # never improves


@pytest.mark.slow
def test_early_stopping_after_patience(tmp_path):
    parser, args = options(tmp_path, '--max-steps', '-1', '--max-epochs',
                           '20', '--early-stopping', '2')
    trainer = set_task.build_trainer(args, parser, monitor='val_mae')
    data = SetDataModule(RandomSets(40), RandomSets(8, seed=1),
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
    task = SetTask(make(), task='classification')
    ys = RandomSets(40, classes=True)
    data = SetDataModule(ys, batch_size=8)
    trainer = set_task.build_trainer(args, parser)
    set_task.fit(trainer, task, data, args)
    path = tmp_path / 'checkpoints' / 'last.ckpt'
    torch.manual_seed(1)
    again = SetTask.load_from_checkpoint(path, model=make())
    assert again.hparams.task == 'classification'
    batch = next(iter(SetLoader(ys, 10)))
    task.eval(), again.eval()
    assert torch.equal(task(batch), again(batch))


@pytest.mark.slow
def test_conditional_and_layer_models_through_a_subclass(tmp_path):
    class Conditional(SetTask):
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
                 SetDataModule(RandomSets(40), batch_size=8), args)
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
        set_task.fit(trainer, SetTask(sum_model()),
            SetDataModule(RandomSets(80), batch_size=8),
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
    task = SetTask(build_sum_model, {'hidden': 5}, lr=0.1,
                   schedule='one_cycle')
    data = SetDataModule(RandomSets(40), batch_size=8)
    set_task.fit(set_task.build_trainer(args, parser), task, data, args)
    path = tmp_path / 'checkpoints' / 'last.ckpt'

    # Plain tensors and strings: no pickled objects.
    saved = torch.load(path, weights_only=True)
    assert saved['hyper_parameters']['model'] == \
        'tests.integration.test_training:build_sum_model'
    assert saved['hyper_parameters']['model_kwargs'] == {'hidden': 5}
    hparams = (tmp_path / 'csv' / 'version_0' / 'hparams.yaml').read_text()
    assert 'model_kwargs:\n  hidden: 5' in hparams

    again = SetTask.load_from_checkpoint(path)
    assert type(again) is SetTask
    assert again.model.phi.out_channels == 5
    batch = next(iter(SetLoader(RandomSets(10, seed=3), 10)))
    task.eval(), again.eval()
    assert torch.equal(task.predict_step(batch), again.predict_step(batch))


@pytest.mark.slow
def test_a_task_given_a_module_asks_for_it_on_load(tmp_path):
    parser, args = options(tmp_path, '--max-steps', '1')
    set_task.fit(set_task.build_trainer(args, parser),
                 SetTask(sum_model()),
                 SetDataModule(RandomSets(40), batch_size=8), args)
    with pytest.raises(TypeError, match="pass the model again"):
        SetTask.load_from_checkpoint(
            tmp_path / 'checkpoints' / 'last.ckpt')


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
