import json
import os

import pytest
import torch
import torch.nn.functional as F

from torch_geometric.data import Batch, Data, InMemoryDataset
from torch_geometric_deepsets import (
    DeepSetsConditional,
    DeepSetsEquivariant,
    DeepSetsInvariant,
    DeepSetsPointCloud,
    PermutationEquivariantLayer,
)
from torch_geometric_deepsets.training import (
    DistributedContext,
    SetLoader,
    Trainer,
    init_distributed,
    load_checkpoint,
    main_process_first,
    save_checkpoint,
    seed_everything,
    write_json,
)


class RandomSets(InMemoryDataset):
    r"""Sets of 3-d points whose target is the sum of all coordinates."""
    def __init__(self, num_sets=120, seed=0):
        super().__init__(None, log=False)
        gen = torch.Generator().manual_seed(seed)
        data_list = []
        for _ in range(num_sets):
            n = int(torch.randint(1, 6, (1, ), generator=gen))
            x = torch.randn(n, 3, generator=gen)
            data_list.append(Data(x=x, y=x.sum().view(1), tag=x[:, :1] * 2))
        self.data, self.slices = self.collate(data_list)


def sum_loss(model, batch):
    return F.l1_loss(model(batch.x, batch.batch).view(-1), batch.y)


def make_trainer(out_dir=None, steps=40, resume=True, **kwargs):
    seed_everything(0)
    # Dropout makes the result depend on the RNG state, which resuming must
    # therefore restore.
    model = DeepSetsInvariant(phi=[3, 16, 16], rho=[16, 16, 1], dropout=0.2)
    sched = kwargs.pop('scheduler', lambda opt: torch.optim.lr_scheduler.
                       StepLR(opt, step_size=7, gamma=0.7))
    return Trainer(model, sum_loss, RandomSets(), steps=steps, batch_size=8,
                   lr=1e-2, out_dir=out_dir, resume=resume, log_every=5,
                   scheduler=sched, progress=False, seed=3, **kwargs)


def assert_same_parameters(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_set_loader_matches_pyg_collation():
    dataset = RandomSets(50)
    loader = SetLoader(dataset, batch_size=7, seed=1)
    loader.set_epoch(2)
    chunks = loader.batch_indices()
    batches = list(loader)
    assert len(batches) == len(chunks) == len(loader) == 8  # ceil(50 / 7)
    for chunk, batch in zip(chunks, batches):
        ref = Batch.from_data_list([dataset[i] for i in chunk])
        for key in ('x', 'y', 'tag', 'batch', 'ptr'):
            assert torch.equal(batch[key], ref[key]), key
        assert batch.num_graphs == len(chunk)
        assert torch.equal(batch.to_data_list()[-1].x, dataset[chunk[-1]].x)

    # A subset (index_select) maps through its indices.
    subset = dataset[torch.tensor([4, 9, 1])]
    batch = next(iter(SetLoader(subset, batch_size=3, shuffle=False)))
    ref = Batch.from_data_list([dataset[4], dataset[9], dataset[1]])
    assert torch.equal(batch.x, ref.x) and torch.equal(batch.y, ref.y)


def test_set_loader_order_shards_and_offsets():
    dataset = RandomSets(40)
    loader = SetLoader(dataset, batch_size=4, seed=5)
    loader.set_epoch(0)
    epoch0 = loader.batch_indices()
    loader.set_epoch(1)
    epoch1 = loader.batch_indices()
    assert sorted(sum(epoch0, [])) == list(range(40))
    assert epoch0 != epoch1
    loader.set_epoch(1, start=3)
    assert loader.batch_indices() == epoch1[3:]
    # Another seed, another order; the same seed, the same order.
    assert SetLoader(dataset, 4, seed=6).batch_indices() != epoch0
    assert SetLoader(dataset, 4, seed=5).batch_indices() == epoch0
    # Two replicas split every epoch into disjoint halves.
    shards = [
        sum(SetLoader(dataset, 4, seed=5, num_replicas=2, rank=r)
            .batch_indices(), []) for r in range(2)
    ]
    assert set(shards[0]).isdisjoint(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(40))
    # Iterating leaves the global RNG alone.
    state = torch.get_rng_state()
    list(loader)
    assert torch.equal(state, torch.get_rng_state())
    # Worker processes produce the same batches.
    loader.set_epoch(1)
    with_workers = SetLoader(dataset, 4, seed=5, num_workers=1)
    with_workers.set_epoch(1)
    for a, b in zip(loader, with_workers):
        assert torch.equal(a.x, b.x) and torch.equal(a.batch, b.batch)


def test_set_loader_drop_last_and_errors():
    dataset = RandomSets(10)
    assert len(SetLoader(dataset, 4, drop_last=True)) == 2
    assert len(SetLoader(dataset, 4, drop_last=False)) == 3
    assert [len(c) for c in SetLoader(dataset, 4).batch_indices()] == \
        [4, 4, 2]
    with pytest.raises(ValueError, match="'batch_size'"):
        SetLoader(dataset, 0)
    with pytest.raises(TypeError, match="'batch_size'"):
        SetLoader(dataset, 2.0)
    with pytest.raises(ValueError, match="'rank'"):
        SetLoader(dataset, 2, num_replicas=2, rank=2)


def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / 'ckpt.pt')
    save_checkpoint({'w': torch.arange(3), 'step': 1}, path)

    real_save = torch.save

    def crash_midway(obj, f, *args, **kwargs):
        f.write(b'partial garbage')
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, 'save', crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({'w': torch.zeros(3), 'step': 2}, path)
    monkeypatch.setattr(torch, 'save', real_save)

    # The previous checkpoint survives intact and no temporary file is left.
    state = load_checkpoint(path)
    assert state['step'] == 1 and torch.equal(state['w'], torch.arange(3))
    assert os.listdir(tmp_path) == ['ckpt.pt']
    with pytest.raises(FileNotFoundError, match='No checkpoint'):
        load_checkpoint(str(tmp_path / 'missing.pt'))

    write_json({'a': [1, 2.5]}, str(tmp_path / 'sub' / 'm.json'))
    with open(tmp_path / 'sub' / 'm.json') as f:
        assert json.load(f) == {'a': [1, 2.5]}


@pytest.mark.parametrize('make', [
    lambda: DeepSetsInvariant(phi=[3, 8, 8], rho=[16, 4], aggr=['sum', 'max']),
    lambda: DeepSetsEquivariant([3, 8, 2], aggr='max', readout='mean'),
    lambda: DeepSetsEquivariant([3, 8, 2], tied=True),
    lambda: DeepSetsConditional(phi=[3, 8], rho=[8, 2], context_channels=2,
                                fusion='film'),
    lambda: PermutationEquivariantLayer(3, 5, aggr='mean'),
    lambda: DeepSetsPointCloud(3, num_classes=4, hidden_channels=8),
])
def test_model_state_dict_round_trips_weights_only(tmp_path, make):
    torch.manual_seed(0)
    model = make()
    torch.manual_seed(1)
    fresh = make()
    path = str(tmp_path / 'model.pt')
    save_checkpoint(model.state_dict(), path)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert_same_parameters(model, fresh)
    x, batch = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 1, 2])
    args = (x, batch)
    if isinstance(model, DeepSetsConditional):
        args = (x, torch.randn(3, 2), batch)
    model.eval(), fresh.eval()
    assert torch.equal(model(*args), fresh(*args))


def test_trainer_resume_is_bitwise_equal(tmp_path, monkeypatch):
    straight = make_trainer(str(tmp_path / 'straight'), steps=40)
    straight.fit()

    # Stop mid-epoch (15 batches per epoch), then resume in a new trainer.
    first = make_trainer(str(tmp_path / 'resumed'), steps=40)
    assert first.fit(until=22)['step'] == 22
    second = make_trainer(str(tmp_path / 'resumed'), steps=40)
    assert second.fit()['step'] == 40
    assert_same_parameters(straight.model, second.model)
    assert second.history == straight.history
    assert second.optimizer.param_groups[0]['lr'] == \
        straight.optimizer.param_groups[0]['lr']

    # The equality hinges on restoring the RNG state (dropout masks): with
    # that step disabled the resumed run drifts away.
    import torch_geometric_deepsets.training as training
    make_trainer(str(tmp_path / 'no_rng'), steps=40).fit(until=22)
    monkeypatch.setattr(training, '_set_rng_state', lambda state: None)
    drifted = make_trainer(str(tmp_path / 'no_rng'), steps=40)
    drifted.fit()
    assert not torch.equal(next(drifted.model.phi.parameters()),
                           next(straight.model.phi.parameters()))


def test_trainer_survives_a_crash_between_checkpoints(tmp_path):
    straight = make_trainer(None, steps=30)
    straight.fit()

    calls = {'n': 0}

    def crashing_loss(model, batch):
        calls['n'] += 1
        if calls['n'] == 17:  # after the checkpoint at step 10, before 20
            raise KeyboardInterrupt
        return sum_loss(model, batch)

    crashed = make_trainer(str(tmp_path), steps=30, checkpoint_every=10)
    crashed.loss_fn = crashing_loss
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    assert load_checkpoint(str(tmp_path / 'checkpoint.pt'))['step'] == 10

    resumed = make_trainer(str(tmp_path), steps=30, checkpoint_every=10)
    resumed.fit()
    assert_same_parameters(straight.model, resumed.model)


def test_trainer_learns_logs_and_evaluates(tmp_path):
    seen = []

    def evaluate(model):
        assert not model.training and not torch.is_grad_enabled()
        seen.append(1)
        return {'calls': len(seen)}

    trainer = make_trainer(str(tmp_path), steps=60, evaluate=evaluate,
                           eval_every=25,
                           scheduler=lambda opt: None)
    out = trainer.fit()
    losses = [h['loss'] for h in trainer.history]
    assert [h['step'] for h in trainer.history] == list(range(5, 61, 5))
    assert losses[-1] < 0.5 * losses[0]
    assert out['loss'] == losses[-1]
    # At steps 25, 50 and the end.
    assert [e['step'] for e in trainer.evals] == [25, 50, 60]
    assert out['eval'] == {'step': 60, 'calls': 3}
    with open(tmp_path / 'metrics.json') as f:
        metrics = json.load(f)
    assert metrics['step'] == 60 and metrics['evals'] == trainer.evals
    assert metrics['history'] == trainer.history
    assert metrics['config']['batch_size'] == 8

    # A finished run resumes to the end without training or re-evaluating.
    again = make_trainer(str(tmp_path), steps=60, evaluate=evaluate,
                         eval_every=25, scheduler=lambda opt: None)
    assert again.fit()['step'] == 60 and len(seen) == 3
    assert_same_parameters(trainer.model, again.model)


def test_trainer_refuses_other_settings_and_bad_arguments(tmp_path):
    make_trainer(str(tmp_path), steps=10).fit()
    with pytest.raises(ValueError, match="steps: 10 -> 12"):
        make_trainer(str(tmp_path), steps=12).fit()
    # resume=False trains from scratch over it.
    assert make_trainer(str(tmp_path), steps=12,
                        resume=False).fit()['step'] == 12

    model = DeepSetsInvariant(phi=[3, 4], rho=[4, 1])
    data = RandomSets(10)
    with pytest.raises(ValueError, match="'steps'"):
        Trainer(model, sum_loss, data, steps=0)
    with pytest.raises(ValueError, match="'lr'"):
        Trainer(model, sum_loss, data, steps=1, lr=-1.0)
    with pytest.raises(ValueError, match="'checkpoint_every'"):
        Trainer(model, sum_loss, data, steps=1, checkpoint_every=5)
    with pytest.raises(TypeError, match="'model'"):
        Trainer(sum_loss, sum_loss, data, steps=1)
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(model, sum_loss, data, steps=1, batch_size=11)
    with pytest.raises(FloatingPointError, match='step 1'):
        Trainer(model, lambda m, b: sum_loss(m, b) * float('nan'), data,
                steps=1, batch_size=2, log_every=1, progress=False).fit()


def test_single_process_context(monkeypatch):
    for key in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK'):
        monkeypatch.delenv(key, raising=False)
    ctx = init_distributed(device='cpu')
    assert ctx == DistributedContext()
    assert ctx.is_main and not ctx.is_distributed
    assert ctx.all_reduce_mean(2.5) == 2.5
    assert ctx.all_gather_object('a') == ['a']
    order = []
    with main_process_first(ctx):
        order.append('body')
    assert order == ['body']
    with pytest.raises(ValueError, match="'backend'"):
        init_distributed(backend='mpi')
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('RANK', '5')
    with pytest.raises(ValueError, match='RANK=5'):
        init_distributed()


def test_close_releases_the_ddp_wrapper_and_fit_rewraps(tmp_path):
    # A one-process gloo group stands in for torchrun; the context claims
    # to be distributed so that the trainer wraps the model in DDP.
    import torch.distributed as torch_dist
    from torch.nn.parallel import DistributedDataParallel

    from torch_geometric_deepsets.training import (
        DistributedContext,
        close_distributed,
    )

    class Forced(DistributedContext):
        is_distributed = property(lambda self: True)

    torch_dist.init_process_group('gloo', store=torch_dist.HashStore(),
                                  rank=0, world_size=1)
    try:
        trainer = make_trainer(str(tmp_path), steps=20, dist=Forced())
        assert isinstance(trainer.train_model, DistributedDataParallel)
        trainer.fit(until=5)
        trainer.close()
        assert trainer.train_model is trainer.model
        assert trainer.fit(until=10)['step'] == 10  # wraps again
        assert isinstance(trainer.train_model, DistributedDataParallel)
        trainer.close()
    finally:
        close_distributed()
    assert not torch_dist.is_initialized()


def test_close_is_a_no_op_in_one_process():
    trainer = make_trainer(steps=10)
    trainer.close()
    assert trainer.train_model is trainer.model
    assert trainer.fit()['step'] == 10
