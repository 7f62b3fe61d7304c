r"""The :class:`~lightning.pytorch.LightningModule` of set regression and
classification."""
import contextlib
from typing import Any, Callable, Dict, Optional, Sequence, Union

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from torch_geometric.data import Batch
from torch_geometric_deepsets.lightning.builders import import_path, locate

LOSSES: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    'l1': F.l1_loss,
    'mse': F.mse_loss,
    'cross_entropy': F.cross_entropy,
}
SCHEDULES = (None, 'one_cycle', 'multistep')
#: The key of the task's class in a checkpoint (load_from_checkpoint).
TASK_CLASS = 'set_task_class'
#: How checkpoints saved by the repository's example scripts before the
#: task moved into the package name it.
_MOVED = {'set_task:SetTask': 'torch_geometric_deepsets.lightning:SetTask'}


def _optimizers() -> Dict[str, type]:
    return {
        name.lower(): cls
        for name, cls in vars(torch.optim).items() if isinstance(cls, type)
        and issubclass(cls, torch.optim.Optimizer) and cls is not
        torch.optim.Optimizer
    }


class SetTask(L.LightningModule):
    r"""Trains a model on PyG batches of sets: regression (one value per
    set) or classification (logits per set).

    The model is given either as a module or, so that
    :meth:`load_from_checkpoint` can rebuild it from the checkpoint alone, as
    a builder (a function or class defined at the top level of a module, or
    its :obj:`"module:name"`) and its :obj:`model_kwargs`: the checkpoint's
    hyperparameters then hold the builder's name and arguments, widths
    included.

    .. code-block:: python

        import lightning.pytorch as L
        from torch_geometric_deepsets import DeepSetsInvariant
        from torch_geometric_deepsets.lightning import SetDataModule, SetTask

        task = SetTask(DeepSetsInvariant, {'phi': [3, 64], 'rho': [64, 1]},
                       loss='l1', schedule='one_cycle')
        trainer = L.Trainer(max_steps=1000, use_distributed_sampler=False)
        trainer.fit(task, datamodule=SetDataModule(train, val))
        path = trainer.checkpoint_callback.best_model_path
        task = SetTask.load_from_checkpoint(path)  # the model rebuilt

    The loss is logged as :obj:`train_loss` (per step),
    :obj:`train_loss_epoch` (its mean over the sets of an epoch, a
    :class:`torchmetrics.MeanMetric`: synchronised across processes, and
    kept in checkpoints so that an epoch interrupted and resumed averages all
    its steps) and :obj:`val_loss` / :obj:`test_loss`; :meth:`metrics` adds
    :obj:`val_mae` and :obj:`val_mse` (regression, in the target's own units)
    or :obj:`val_acc` (classification). Regression targets may be
    standardised with :obj:`target_mean` and :obj:`target_std`: the model
    then learns :math:`(y - \mu) / \sigma`, and :meth:`predict_step` and the
    metrics undo it.

    The learning rate follows :obj:`schedule`, stepped every optimisation
    step over the run's :obj:`estimated_stepping_batches`:
    :obj:`"one_cycle"` is :class:`~torch.optim.lr_scheduler.OneCycleLR`
    (cosine warm-up over the first :obj:`warmup` fraction from
    :math:`lr / 25` to :obj:`lr`, then down to :math:`lr / 250000`, no
    momentum cycling); :obj:`"multistep"` is
    :class:`~torch.optim.lr_scheduler.MultiStepLR`, multiplying by
    :obj:`gamma` at the :obj:`milestones` fractions of the run. A resumed run
    with a larger :obj:`max_steps` stretches the one-cycle schedule over the
    new length; the multi-step milestones keep their steps.

    The global :obj:`torch` random state goes into every checkpoint and comes
    back on resume, so dropout and noise continue as if never stopped.

    Args:
        model (torch.nn.Module or callable or str): The model, called as
            :obj:`model(batch.x, batch.batch, dim_size=batch.num_graphs)`
            (see :meth:`forward`), or its builder.
        model_kwargs (dict, optional): The builder's keyword arguments.
            (default: :obj:`None`)
        task (str, optional): :obj:`"regression"` or
            :obj:`"classification"`. (default: :obj:`"regression"`)
        loss (str, optional): :obj:`"l1"`, :obj:`"mse"` or
            :obj:`"cross_entropy"`. (default: :obj:`"mse"` for regression,
            :obj:`"cross_entropy"` for classification)
        optimizer (str, optional): A :mod:`torch.optim` class, by its name in
            lower case (:obj:`"adam"`, :obj:`"adamw"`, :obj:`"sgd"`, ...).
            (default: :obj:`"adam"`)
        lr (float, optional): (Peak) learning rate. (default: :obj:`1e-3`)
        weight_decay (float, optional): Weight decay. (default: :obj:`0.0`)
        schedule (str, optional): :obj:`None`, :obj:`"one_cycle"` or
            :obj:`"multistep"`. (default: :obj:`None`)
        warmup (float, optional): Warm-up fraction of :obj:`"one_cycle"`.
            (default: :obj:`0.1`)
        milestones (Sequence[float], optional): Fractions of the run at which
            :obj:`"multistep"` multiplies the learning rate by :obj:`gamma`.
            (default: :obj:`(0.4, 0.8)`)
        gamma (float, optional): Factor of :obj:`"multistep"`.
            (default: :obj:`0.1`)
        target_mean (float, optional): :math:`\mu` of the regression target.
            (default: :obj:`0.0`)
        target_std (float, optional): :math:`\sigma` of the regression
            target. (default: :obj:`1.0`)
    """
    def __init__(
        self,
        model: Union[nn.Module, Callable[..., nn.Module], str, None],
        model_kwargs: Optional[Dict[str, Any]] = None,
        task: str = 'regression',
        loss: Optional[str] = None,
        optimizer: str = 'adam',
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        schedule: Optional[str] = None,
        warmup: float = 0.1,
        milestones: Sequence[float] = (0.4, 0.8),
        gamma: float = 0.1,
        target_mean: float = 0.0,
        target_std: float = 1.0,
    ) -> None:
        super().__init__()
        if task not in ('regression', 'classification'):
            raise ValueError(f"'task' must be 'regression' or "
                             f"'classification' (got {task!r})")
        if loss is None:
            loss = 'mse' if task == 'regression' else 'cross_entropy'
        if loss not in LOSSES:
            raise ValueError(f"'loss' must be one of {sorted(LOSSES)} "
                             f"(got {loss!r})")
        if optimizer not in _optimizers():
            raise ValueError(f"'optimizer' must name a torch.optim class in "
                             f"lower case, e.g. 'adam' (got {optimizer!r})")
        if schedule not in SCHEDULES:
            raise ValueError(f"'schedule' must be one of {SCHEDULES} "
                             f"(got {schedule!r})")
        if not lr > 0:
            raise ValueError(f"'lr' must be positive (got {lr})")
        if not 0 < warmup < 1:
            raise ValueError(f"'warmup' must be in (0, 1) (got {warmup})")
        if not target_std > 0:
            raise ValueError(f"'target_std' must be positive "
                             f"(got {target_std})")
        if model is None:
            raise TypeError("'model' is missing: this checkpoint's task was "
                            "given a model object, not a builder; pass the "
                            "model again, load_from_checkpoint(path, "
                            "model=...)")
        # Every argument, a subclass's too, from the frames of __init__
        # (Lightning's collection); then the model's entry replaced by what
        # a checkpoint can hold and rebuild from.
        self.save_hyperparameters(ignore=['model', 'model_kwargs'])
        if isinstance(model, nn.Module):
            if model_kwargs:
                raise ValueError("'model_kwargs' needs a model builder, not "
                                 "a module")
            builder, model_kwargs = None, None
        else:
            builder = model if isinstance(model, str) else import_path(model)
            model_kwargs = dict(model_kwargs or {})
            model = locate(builder)(**model_kwargs)
        # Milestones as a list: the checkpoint, hparams.yaml and a run's
        # JSON then all hold the same value.
        self.save_hyperparameters(dict(self.hparams, model=builder,
                                       model_kwargs=model_kwargs,
                                       milestones=list(milestones)))
        self.model = model
        self.train_loss_mean = MeanMetric()
        self._resumed_loss: Optional[Dict[str, Any]] = None
        self._restretch = False

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any,
                             **kwargs: Any) -> 'SetTask':
        r"""Lightning's :meth:`~lightning.pytorch.LightningModule.
        load_from_checkpoint`, as the class that saved the checkpoint (a
        subclass of this one, such as an example's own task) and with its
        model rebuilt from the recorded builder and arguments; a task trained
        with a model object needs it again as :obj:`model=...`."""
        saved = torch.load(checkpoint_path, map_location='cpu',
                           weights_only=True).get(TASK_CLASS)
        if hasattr(checkpoint_path, 'seek'):
            checkpoint_path.seek(0)  # a file object, read again below
        target = cls if saved is None else locate(_MOVED.get(saved, saved))
        if not (isinstance(target, type) and issubclass(target, cls)):
            raise TypeError(f"the checkpoint holds a {saved}, not a "
                            f"{cls.__name__}")
        return super(SetTask, target).load_from_checkpoint(
            checkpoint_path, *args, **kwargs)

    # What a subclass overrides ###############################################

    def forward(self, batch: Batch) -> Tensor:
        r"""The model's output on :obj:`batch`: :obj:`[num_sets]` for
        regression (in standardised units), :obj:`[num_sets, classes]` for
        classification."""
        out = self.model(batch.x, batch.batch, dim_size=batch.num_graphs)
        if self.hparams.task == 'regression' and out.dim() > 1 and \
                out.size(-1) == 1:
            out = out.squeeze(-1)
        return out

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        r"""The loss of :meth:`forward`'s output against :obj:`batch.y`."""
        target = batch.y
        if self.hparams.task == 'regression':
            target = (target - self.hparams.target_mean) / \
                self.hparams.target_std
        return LOSSES[self.hparams.loss](out, target)

    def metrics(self, out: Tensor, batch: Batch) -> Dict[str, Tensor]:
        r"""Evaluation metrics of a batch, averaged over its sets."""
        if self.hparams.task == 'classification':
            return {'acc': (out.argmax(-1) == batch.y).float().mean()}
        error = self.unscale(out) - batch.y
        return {'mae': error.abs().mean(), 'mse': error.pow(2).mean()}

    # The rest is the same for every set task #################################

    def unscale(self, out: Tensor) -> Tensor:
        r"""Undoes the standardisation of regression outputs."""
        if self.hparams.task != 'regression':
            return out
        return out * self.hparams.target_std + self.hparams.target_mean

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        r"""The loss of a batch, logged as :obj:`train_loss`; its mean over
        the epoch's sets as :obj:`train_loss_epoch`."""
        loss = self.loss(self(batch), batch)
        self.log('train_loss', loss, prog_bar=True, on_step=True,
                 on_epoch=False, batch_size=batch.num_graphs)
        self.train_loss_mean.update(loss.detach(), batch.num_graphs)
        self.log('train_loss_epoch', self.train_loss_mean, prog_bar=True,
                 on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: Batch, stage: str) -> None:
        out = self(batch)
        values = {'loss': self.loss(out, batch), **self.metrics(out, batch)}
        # sync_dist: under DDP every process sees a shard of the sets.
        self.log_dict({f'{stage}_{k}': v
                       for k, v in values.items()}, prog_bar=stage == 'val',
                      batch_size=batch.num_graphs, sync_dist=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        r"""Logs :obj:`val_loss` and the :meth:`metrics`."""
        self._evaluate(batch, 'val')

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        r"""Logs :obj:`test_loss` and the :meth:`metrics`."""
        self._evaluate(batch, 'test')

    def predict_step(self, batch: Batch, batch_idx: int = 0) -> Tensor:
        r""":meth:`forward` in the target's own units."""
        return self.unscale(self(batch))

    def configure_optimizers(self) -> Dict[str, Any]:
        r"""The optimizer and the per-step schedule (see above)."""
        hp = self.hparams
        optimizer = _optimizers()[hp.optimizer](
            self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.schedule is None:
            return {'optimizer': optimizer}
        total = self.trainer.estimated_stepping_batches
        if total == float('inf'):
            raise ValueError(f"schedule={hp.schedule!r} needs a finite run: "
                             f"set 'max_steps' or 'max_epochs'")
        total = max(int(total), 1)
        if hp.schedule == 'one_cycle':
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=hp.lr, total_steps=total,
                pct_start=_pct_start(hp.warmup, total),
                cycle_momentum=False)
        else:
            scheduler = torch.optim.lr_scheduler.MultiStepLR(
                optimizer,
                sorted({max(1, round(f * total))
                        for f in hp.milestones}), gamma=hp.gamma)
        return {'optimizer': optimizer,
                'lr_scheduler': {'scheduler': scheduler, 'interval': 'step'}}

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        r"""Adds the task's class, the global random state and the sums
        behind :obj:`train_loss_epoch` to :obj:`checkpoint`."""
        # A class defined inside a function has no import path: loading
        # then needs that class's own load_from_checkpoint.
        with contextlib.suppress(ValueError):
            checkpoint[TASK_CLASS] = import_path(type(self))
        checkpoint['torch_rng_state'] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint['cuda_rng_state'] = torch.cuda.get_rng_state_all()
        metric = self.train_loss_mean
        # Every process saves (Lightning's save_checkpoint is collective),
        # so the sums of all processes can be gathered here.
        with metric.sync_context():
            checkpoint['train_loss_mean'] = {
                'epoch': self.current_epoch,
                'sum': metric.mean_value.detach().cpu().clone(),
                'weight': metric.weight.detach().cpu().clone()}

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        r"""Restores what :meth:`on_save_checkpoint` added."""
        if 'torch_rng_state' in checkpoint:
            torch.set_rng_state(checkpoint['torch_rng_state'])
        if 'cuda_rng_state' in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint['cuda_rng_state'])
        self._resumed_loss = checkpoint.get('train_loss_mean')
        if self.hparams.schedule == 'one_cycle':
            # OneCycleLR's state fixes the length of the run (and the phases
            # computed from it): a run resumed with a larger max_steps keeps
            # the step it reached and takes the new length.
            for state in checkpoint.get('lr_schedulers', []):
                state.pop('total_steps', None)
                state.pop('_schedule_phases', None)
                self._restretch = True

    def on_train_start(self) -> None:
        r"""After a resume in the middle of an epoch, puts back the part of
        :obj:`train_loss_epoch` before the checkpoint; and sets the learning
        rate of the step reached along the (stretched) one-cycle schedule:
        the optimizer's restored one comes from the schedule of the run that
        saved it."""
        state, self._resumed_loss = self._resumed_loss, None
        # The saved sums cover every process: one of them takes them back.
        if state is not None and state['epoch'] == self.current_epoch and \
                self.global_rank == 0:
            self.train_loss_mean.mean_value = state['sum'].to(self.device)
            self.train_loss_mean.weight = state['weight'].to(self.device)
        if self._restretch:
            self._restretch = False
            for config in self.trainer.lr_scheduler_configs:
                config.scheduler.last_epoch -= 1
                config.scheduler.step()


def _pct_start(warmup: float, total: int) -> float:
    r"""The :obj:`pct_start` of :class:`OneCycleLR` that warms up over
    :math:`\max(1, \mathrm{round}(warmup \cdot total))` steps. With the plain
    fraction, :class:`OneCycleLR` skips the warm-up in runs under
    :math:`1 / warmup` steps and divides by zero when the warm-up is exactly
    one step (10 steps at 0.1): its warm-up ends at step
    :math:`pct\_start \cdot total - 1`, which must lie in
    :math:`[1, total - 2]`."""
    if total < 3:
        return warmup  # nothing to warm up in one or two steps
    up = min(max(1, round(warmup * total)), total - 2)
    return (up + 1) / total
