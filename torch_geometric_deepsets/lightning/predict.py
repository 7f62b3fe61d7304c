r"""Inference of a task over a dataset, without a trainer."""
import lightning.pytorch as L
import torch

from torch_geometric.data import Dataset
from torch_geometric_deepsets.lightning.loader import SetLoader


@torch.no_grad()
def predict(task: L.LightningModule, dataset: Dataset,
            batch_size: int = 1024) -> tuple:
    r"""Runs :obj:`task` over :obj:`dataset` in order, in eval mode on the
    task's device, without a :class:`~lightning.pytorch.Trainer` (no
    logger, callbacks or output folder; for those, use
    :meth:`Trainer.predict <lightning.pytorch.Trainer.predict>` with a
    :class:`SetLoader`).

    Args:
        task (lightning.pytorch.LightningModule): A :class:`SetTask` or any
            module with a :meth:`predict_step`.
        dataset (torch_geometric.data.Dataset): The sets.
        batch_size (int, optional): Sets per batch. (default: :obj:`1024`)

    Returns:
        The concatenated :meth:`~SetTask.predict_step` outputs (on the CPU)
        and the list of batches, in the dataset's order.
    """
    was_training = task.training
    task.eval()
    outputs, batches = [], []
    for i, batch in enumerate(SetLoader(dataset, batch_size)):
        outputs.append(task.predict_step(batch.to(task.device), i).cpu())
        batches.append(batch)
    task.train(was_training)
    return torch.cat(outputs), batches
