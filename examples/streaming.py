r"""Training on sets that are read from disk in chunks, with Lightning.

Each training set is a large sample of a 3-D Gaussian with its own scale;
the model regresses the log of the scale. The samples live in one
memory-mapped file and no set is ever in memory whole: every training step
streams one set through :math:`\phi` twice (once for the output, once in
``backward()`` for the exact gradient, see
:func:`~torch_geometric_deepsets.stream_encode`), so memory holds one chunk
and the per-set state. Lightning's manual optimisation runs the step.

Usage::

    python examples/streaming.py --num-sets 16 --set-size 200000
"""
import argparse
import os
import tempfile
from typing import List, Optional, Sequence, Tuple

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from torch_geometric_deepsets import Chunks, DeepSetsInvariant, stream_encode


def write_sets(path: str, num_sets: int, set_size: int,
               seed: int = 0) -> Tuple[np.memmap, torch.Tensor]:
    r"""Writes :obj:`num_sets` samples of :obj:`set_size` 3-D points, one
    after the other, to :obj:`path`; returns the file mapped and the
    targets (the log of every sample's scale)."""
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.5, 4.0, num_sets)
    data = np.memmap(path, dtype=np.float32, mode='w+',
                     shape=(num_sets * set_size, 3))
    for i, scale in enumerate(scales):
        data[i * set_size:(i + 1) * set_size] = rng.normal(
            0.0, scale, (set_size, 3))
    data.flush()
    mapped = np.memmap(path, dtype=np.float32, mode='r',
                       shape=(num_sets * set_size, 3))
    return mapped, torch.tensor(np.log(scales), dtype=torch.float32)


class StreamedSets(torch.utils.data.Dataset):
    r"""Set :obj:`i` as :class:`~torch_geometric_deepsets.Chunks` of the
    mapped file (nothing is read until the chunks are) and its target."""
    def __init__(self, data: np.ndarray, y: torch.Tensor, set_size: int,
                 chunk_size: int) -> None:
        self.data, self.y = data, y
        self.set_size, self.chunk_size = set_size, chunk_size

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Tuple[Chunks, torch.Tensor]:
        rows = self.data[i * self.set_size:(i + 1) * self.set_size]
        return Chunks(rows, chunk_size=self.chunk_size), self.y[i:i + 1]


class StreamedRegression(L.LightningModule):
    r"""One set per step: streamed forward, exact backward, one optimiser
    step. Manual optimisation, because the backward pass reads the chunks
    again (automatic optimisation would call the same
    :meth:`~torch.Tensor.backward` and work too)."""
    def __init__(self, model: DeepSetsInvariant, lr: float = 1e-3) -> None:
        super().__init__()
        self.model, self.lr = model, lr
        self.automatic_optimization = False

    def training_step(self, item: Tuple[Chunks, torch.Tensor], _) -> None:
        chunks, y = item
        optimizer = self.optimizers()
        optimizer.zero_grad()
        out = stream_encode(self.model, chunks).view(-1)
        loss = F.mse_loss(out, y)
        self.manual_backward(loss)
        optimizer.step()
        self.log('train_loss', loss, prog_bar=True, batch_size=1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def build_model() -> DeepSetsInvariant:
    return DeepSetsInvariant(phi=[3, 64, 64], rho=[64, 64, 1], aggr='mean')


def loader(data: np.ndarray, y: torch.Tensor, set_size: int,
           chunk_size: int) -> DataLoader:
    # batch_size=None: one set per item, not collated.
    return DataLoader(StreamedSets(data, y, set_size, chunk_size),
                      batch_size=None, shuffle=False)


def main(argv: Optional[Sequence[str]] = None) -> List[float]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-sets', type=int, default=16)
    parser.add_argument('--set-size', type=int, default=200_000)
    parser.add_argument('--chunk-size', type=int, default=50_000)
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--lr', type=float, default=3e-3)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    L.seed_everything(args.seed, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        data, y = write_sets(os.path.join(tmp, 'sets.f32'), args.num_sets,
                             args.set_size, args.seed)
        task = StreamedRegression(build_model(), lr=args.lr)
        trainer = L.Trainer(max_epochs=args.epochs, accelerator='cpu',
                            logger=False, enable_checkpointing=False,
                            enable_model_summary=False)
        trainer.fit(task, loader(data, y, args.set_size, args.chunk_size))
        sets = StreamedSets(data, y, args.set_size, args.chunk_size)
        with torch.no_grad():  # one pass per set: no backward to prepare
            preds = [float(stream_encode(task.model, sets[i][0]))
                     for i in range(len(sets))]
        del data, sets  # unmap before the directory goes
    errors = [abs(p - float(t)) for p, t in zip(preds, y)]
    print(f'mean absolute error of log-scale: {np.mean(errors):.3f}')
    return errors


if __name__ == '__main__':
    main()
