r"""Chunks of rows: what :func:`~torch_geometric_deepsets.stream_encode` and
:class:`~torch_geometric_deepsets.SetAccumulator` read."""
from typing import Any, Iterator, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from torch_geometric_deepsets.checks import check_int

Chunk = Union[Tensor, Tuple[Tensor, Tensor], Any]


class Chunks:
    r"""The rows of :obj:`x` (and their set ids :obj:`batch`) as chunks of
    :obj:`chunk_size` rows, for :func:`stream_encode` and
    :class:`SetAccumulator`: iterating gives :obj:`(x_chunk, batch_chunk)`
    pairs, anew each time (both passes of :func:`stream_encode` read it).

    :obj:`x` and :obj:`batch` may be tensors or NumPy arrays, a
    :class:`numpy.memmap` of a file bigger than memory included: only one
    chunk at a time is copied into memory.

    Args:
        x (torch.Tensor or numpy.ndarray): The elements, :math:`[N, F]`.
        batch (torch.Tensor or numpy.ndarray, optional): The set id of
            every row, :math:`[N]`; all rows form set 0 if not given.
            (default: :obj:`None`)
        chunk_size (int, optional): Rows per chunk. (default: :obj:`65536`)
    """
    def __init__(self, x: Union[Tensor, np.ndarray],
                 batch: Union[Tensor, np.ndarray, None] = None,
                 chunk_size: int = 65536) -> None:
        chunk_size = check_int('chunk_size', chunk_size)
        if batch is not None and len(batch) != len(x):
            raise ValueError(f"'batch' must hold one set id per row of 'x' "
                             f"(got {len(batch)} ids for {len(x)} rows)")
        self.x, self.batch, self.chunk_size = x, batch, chunk_size

    def __len__(self) -> int:
        return -(-len(self.x) // self.chunk_size)

    def __iter__(self) -> Iterator[Tuple[Tensor, Optional[Tensor]]]:
        for start in range(0, len(self.x), self.chunk_size):
            stop = start + self.chunk_size
            batch = None if self.batch is None else \
                _tensor(self.batch[start:stop])
            yield _tensor(self.x[start:stop]), batch

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(rows={len(self.x)}, '
                f'chunk_size={self.chunk_size})')


def _tensor(rows: Union[Tensor, np.ndarray]) -> Tensor:
    if isinstance(rows, Tensor):
        return rows
    # A copy: a memmap's pages are read once and the chunk is owned memory.
    return torch.from_numpy(np.array(rows))


def split_chunk(chunk: Chunk) -> Tuple[Tensor, Optional[Tensor]]:
    r"""A chunk as :obj:`(x, batch)`: a tensor (all rows in set 0), an
    :obj:`(x, batch)` pair (as a :class:`~torch.utils.data.DataLoader` over
    a :class:`~torch.utils.data.TensorDataset` gives it), or an object with
    :obj:`x` and :obj:`batch` attributes (a PyG :class:`Batch`)."""
    if isinstance(chunk, Tensor):
        return chunk, None
    if isinstance(chunk, (tuple, list)) and len(chunk) in (1, 2):
        return chunk[0], chunk[1] if len(chunk) == 2 else None
    if hasattr(chunk, 'x') and hasattr(chunk, 'batch'):
        return chunk.x, chunk.batch
    raise TypeError(f"every chunk must be a tensor of rows, an (x, batch) "
                    f"pair or an object with 'x' and 'batch' (got "
                    f"{type(chunk).__name__})")
