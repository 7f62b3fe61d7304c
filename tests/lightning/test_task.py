r""":class:`~torch_geometric_deepsets.lightning.SetTask`: its loss and
metrics by hand, its argument checks, and a checkpoint that rebuilds its
model alone, trained with a plain Lightning trainer."""
import lightning.pytorch as L
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import RandomSets
from torch_geometric.data import Batch, Data
from torch_geometric_deepsets import DeepSetsInvariant, DeepSetsPointCloud
from torch_geometric_deepsets.lightning import (
    SetDataModule,
    SetLoader,
    SetTask,
)
from torch_geometric_deepsets.lightning.task import TASK_CLASS


def build_sum_model(hidden):
    return DeepSetsInvariant(phi=[3, hidden], rho=[hidden, 1])


class Shifted(SetTask):
    r"""A task of its own, defined at the top level of a module, so that a
    checkpoint names it."""
    def predict_step(self, batch, batch_idx=0):
        return super().predict_step(batch, batch_idx) + 1.0


def fit(task, tmp_path, steps=3):
    trainer = L.Trainer(max_steps=steps, default_root_dir=tmp_path,
                        logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=False)
    data = SetDataModule(RandomSets(40), RandomSets(8, seed=1),
                         batch_size=8)
    trainer.fit(task, datamodule=data)
    path = tmp_path / 'task.ckpt'
    trainer.save_checkpoint(path)
    return path


def test_loss_and_metrics_by_hand():
    batch = Batch.from_data_list([
        Data(x=torch.zeros(2, 1), y=torch.tensor([10.0])),
        Data(x=torch.zeros(1, 1), y=torch.tensor([4.0])),
    ])
    task = SetTask(torch.nn.Identity(), loss='l1', target_mean=6.0,
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
    clf = SetTask(torch.nn.Identity(), task='classification')
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
        SetTask(torch.nn.Identity(), **kwargs)


def test_package_models_are_named_by_their_public_path():
    task = SetTask(DeepSetsPointCloud, dict(
        in_channels=3, num_classes=4, hidden_channels=8),
        task='classification')
    assert task.hparams.model == 'torch_geometric_deepsets:DeepSetsPointCloud'
    assert type(task.model) is DeepSetsPointCloud


@pytest.mark.parametrize('builder,match', [
    (lambda: None, 'top level of a module'),
    ('no_such_module:f', "cannot import the model builder"),
    ('nocolon', "must be named 'module:name'"),
])
def test_bad_model_builders(builder, match):
    with pytest.raises((ValueError, ImportError), match=match):
        SetTask(builder)
    with pytest.raises(ValueError, match="'model_kwargs' needs a model "
                       "builder"):
        SetTask(build_sum_model(3), {'hidden': 3})


def test_checkpoint_rebuilds_the_model_with_weights_only(tmp_path):
    task = SetTask(build_sum_model, {'hidden': 5}, lr=0.1,
                   schedule='one_cycle')
    path = fit(task, tmp_path)
    saved = torch.load(path, weights_only=True)  # no pickled objects
    assert saved[TASK_CLASS] == 'torch_geometric_deepsets.lightning:SetTask'
    assert saved['hyper_parameters']['model'] == \
        'tests.lightning.test_task:build_sum_model'
    again = SetTask.load_from_checkpoint(path)
    assert type(again) is SetTask and again.model.phi.out_channels == 5
    batch = next(iter(SetLoader(RandomSets(10, seed=3), 10)))
    task.eval(), again.eval()
    assert torch.equal(task.predict_step(batch), again.predict_step(batch))


def test_a_checkpoint_comes_back_as_the_class_that_saved_it(tmp_path):
    path = fit(Shifted(build_sum_model, {'hidden': 4}), tmp_path)
    assert type(SetTask.load_from_checkpoint(path)) is Shifted

    class Other(SetTask):  # neither the saved class nor a base of it
        pass
    with pytest.raises(TypeError, match='holds a tests.lightning.test_task:'
                       'Shifted, not a Other'):
        Other.load_from_checkpoint(path)


def test_checkpoints_of_the_examples_former_task_load(tmp_path):
    # Saved before the task moved into the package, a checkpoint named it
    # by the examples' module.
    path = fit(SetTask(build_sum_model, {'hidden': 4}), tmp_path)
    saved = torch.load(path, weights_only=True)
    saved[TASK_CLASS] = 'set_task:SetTask'
    torch.save(saved, path)
    assert type(SetTask.load_from_checkpoint(path)) is SetTask
