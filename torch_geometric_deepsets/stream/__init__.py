r"""Sets bigger than memory: a set (or a batch of sets) read as a sequence of
chunks of rows, pooled exactly and trained with exact gradients in memory
that does not grow with the set.

* :mod:`.parts`: the state of each decomposable pooling;
* :mod:`.chunks`: chunks of rows (:class:`Chunks`);
* :mod:`.elements`: which element networks run chunk by chunk;
* :mod:`.accumulator`: pooling streamed rows (:class:`SetAccumulator`);
* :mod:`.replay`: exact gradients in a second pass (:func:`stream_encode`).
"""
from torch_geometric_deepsets.stream.accumulator import SetAccumulator
from torch_geometric_deepsets.stream.chunks import Chunks
from torch_geometric_deepsets.stream.parts import StreamPart
from torch_geometric_deepsets.stream.replay import stream_encode

__all__ = ['Chunks', 'SetAccumulator', 'stream_encode', 'StreamPart']
