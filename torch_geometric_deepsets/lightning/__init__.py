r"""Training on `PyTorch Lightning <https://lightning.ai>`_, as PyG ships
:class:`~torch_geometric.data.LightningDataset`: a
:class:`~lightning.pytorch.LightningModule` for regression and
classification of sets (:class:`SetTask`), a data module with resumable,
sharded batches of PyG datasets of sets (:class:`SetDataModule`), and the
callbacks the example scripts use.

Needs the :obj:`lightning` extra (``pip install
'torch_geometric_deepsets[lightning]'``); :obj:`import
torch_geometric_deepsets` never imports Lightning.
"""
try:
    import lightning.pytorch  # noqa: F401
    import torchmetrics  # noqa: F401
except ImportError as e:
    raise ModuleNotFoundError(
        f"torch_geometric_deepsets.lightning needs PyTorch Lightning and "
        f"torchmetrics ({e}); install them with: pip install "
        f"'torch_geometric_deepsets[lightning]'", name=e.name) from e

from torch_geometric_deepsets.lightning.builders import import_path, locate
from torch_geometric_deepsets.lightning.datamodule import (
    SetDataModule,
    one_process_at_a_time,
)
from torch_geometric_deepsets.lightning.interrupt import Interrupt
from torch_geometric_deepsets.lightning.loader import SetLoader
from torch_geometric_deepsets.lightning.predict import predict
from torch_geometric_deepsets.lightning.progress import (
    EpochLog,
    TerminalProgressBar,
)
from torch_geometric_deepsets.lightning.task import SetTask

__all__ = [
    'SetTask',
    'SetDataModule',
    'SetLoader',
    'predict',
    'one_process_at_a_time',
    'EpochLog',
    'TerminalProgressBar',
    'Interrupt',
    'import_path',
    'locate',
]
