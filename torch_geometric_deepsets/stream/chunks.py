r"""Chunks of rows: what :func:`~torch_geometric_deepsets.stream_encode` and
:class:`~torch_geometric_deepsets.SetAccumulator` read."""
from typing import Any, Iterable, Iterator, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from torch_geometric.data import Batch
from torch_geometric_deepsets.checks import check_int

Chunk = Union[Tensor, Tuple[Tensor, Tensor], Any]


class Chunks:
    r"""The rows of :obj:`x` (with their set ids :obj:`batch` and weights
    :obj:`weight`) as chunks of :obj:`chunk_size` rows, for
    :func:`stream_encode` and :class:`SetAccumulator`: iterating gives
    :obj:`(x_chunk, batch_chunk)` pairs (:obj:`(x_chunk, batch_chunk,
    weight_chunk)` with weights), anew each time (both passes of
    :func:`stream_encode` read it).

    :obj:`x`, :obj:`batch` and :obj:`weight` may be tensors or NumPy
    arrays, a :class:`numpy.memmap` of a file bigger than memory included:
    only one chunk at a time is copied into memory. The set ids are global:
    set :math:`s` is the same set in every chunk.

    Args:
        x (torch.Tensor or numpy.ndarray): The elements, :math:`[N, F]`.
        batch (torch.Tensor or numpy.ndarray, optional): The set id of
            every row, :math:`[N]`; all rows form set 0 if not given.
            (default: :obj:`None`)
        chunk_size (int, optional): Rows per chunk. (default: :obj:`65536`)
        weight (torch.Tensor or numpy.ndarray, optional): The weight of
            every row, :math:`[N]` (a row of weight :math:`k` counts as
            :math:`k` copies of it). (default: :obj:`None`)
    """
    def __init__(self, x: Union[Tensor, np.ndarray],
                 batch: Union[Tensor, np.ndarray, None] = None,
                 chunk_size: int = 65536,
                 weight: Union[Tensor, np.ndarray, None] = None) -> None:
        chunk_size = check_int('chunk_size', chunk_size)
        for name, values in (('batch', batch), ('weight', weight)):
            if values is not None and len(values) != len(x):
                raise ValueError(f"'{name}' must hold one entry per row of "
                                 f"'x' (got {len(values)} for {len(x)} "
                                 f"rows)")
        self.x, self.batch, self.chunk_size = x, batch, chunk_size
        self.weight = weight

    def __len__(self) -> int:
        return -(-len(self.x) // self.chunk_size)

    def __iter__(self) -> Iterator[Tuple[Optional[Tensor], ...]]:
        for start in range(0, len(self.x), self.chunk_size):
            stop = start + self.chunk_size
            rows = (_tensor(self.x[start:stop]),
                    _maybe(self.batch, start, stop))
            if self.weight is not None:
                rows += (_tensor(self.weight[start:stop]), )
            yield rows

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(rows={len(self.x)}, '
                f'chunk_size={self.chunk_size})')


def _maybe(values: Union[Tensor, np.ndarray, None], start: int,
           stop: int) -> Optional[Tensor]:
    return None if values is None else _tensor(values[start:stop])


def _tensor(rows: Union[Tensor, np.ndarray]) -> Tensor:
    if isinstance(rows, Tensor):
        return rows
    # A copy: a memmap's pages are read once and the chunk is owned memory.
    return torch.from_numpy(np.array(rows))


def split_chunk(chunk: Chunk
                ) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    r"""A chunk as :obj:`(x, batch, weight)`: a tensor (all rows in set 0,
    no weights), an :obj:`(x, batch)` pair or :obj:`(x, batch, weight)`
    triple (as a :class:`~torch.utils.data.DataLoader` over a
    :class:`~torch.utils.data.TensorDataset` gives them), or an object with
    :obj:`x` and :obj:`batch` attributes (and :obj:`weight`, if it has one:
    a PyG :class:`Batch`)."""
    if isinstance(chunk, Tensor):
        return chunk, None, None
    if isinstance(chunk, (tuple, list)) and len(chunk) in (1, 2, 3):
        return tuple(chunk) + (None, ) * (3 - len(chunk))
    if hasattr(chunk, 'x') and hasattr(chunk, 'batch'):
        return chunk.x, chunk.batch, getattr(chunk, 'weight', None)
    raise TypeError(f"every chunk must be a tensor of rows, an (x, batch) "
                    f"pair, an (x, batch, weight) triple or an object with "
                    f"'x' and 'batch' (got {type(chunk).__name__})")


def read_chunks(chunks: Iterable[Chunk], distributed: bool = False
                ) -> Iterator[Tuple[Tensor, Optional[Tensor],
                                    Optional[Tensor]]]:
    r"""Every chunk of :obj:`chunks` as :obj:`(x, batch, weight)`
    (:func:`split_chunk`), with the set ids made global where a chunk's are
    local: a PyG :class:`~torch_geometric.data.Batch` collated from graphs
    (as a :class:`~torch_geometric.loader.DataLoader` gives it; it has
    :obj:`ptr`) numbers its graphs from 0, so its sets are numbered after
    those of the collated chunks before it (each holds whole sets); a
    :class:`Batch` built with global ids and no :obj:`ptr` keeps them.
    Across processes a process cannot know the others' counts: there
    collated chunks are refused."""
    offset = 0
    for chunk in chunks:
        x, batch, weight = split_chunk(chunk)
        if isinstance(chunk, Batch) and getattr(chunk, 'ptr', None) \
                is not None:
            if distributed:
                raise ValueError(
                    "a chunk is a PyG Batch, whose set ids count its own "
                    "graphs from 0; across processes give global set ids "
                    "as (x, batch) pairs (or (x, batch, weight) triples)")
            batch = batch + offset
            offset += chunk.num_graphs
        yield x, batch, weight
