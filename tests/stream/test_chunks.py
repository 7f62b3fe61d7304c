r"""Chunks from memory maps, files, data loaders and PyG batches stream as
the rows in memory do."""
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from tests.streaming import (
    assert_close,
    make_model,
    make_sets,
    streamed,
    whole,
)
from torch_geometric.data import Batch
from torch_geometric_deepsets import (
    Chunks,
)


def test_chunks_from_a_memory_map_and_torch_from_file(tmp_path):
    model = make_model('std', torch.float32)
    x, batch = make_sets(torch.float32, num_rows=50)
    target = torch.randn(7, 2)
    out, grads = whole(model, x, batch, 7, target)

    path = tmp_path / 'x.f32'
    x.numpy().tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode='r', shape=(50, 3))
    chunks = Chunks(mapped, batch.numpy(), chunk_size=8)
    assert len(chunks) == 7
    from_file = torch.from_file(str(path), shared=False, size=150,
                                dtype=torch.float32).view(50, 3)
    for source in (chunks, Chunks(from_file, batch, chunk_size=13)):
        s_out, s_grads = streamed(model, source, 7, target)
        assert_close(s_out, out, torch.float32)
        for key in grads:
            assert_close(s_grads[key], grads[key], torch.float32)



def test_chunks_from_a_data_loader_and_pyg_batches():
    model = make_model('softmax_learn', torch.float32)
    x, batch = make_sets(torch.float32)
    target = torch.randn(7, 2)
    out, grads = whole(model, x, batch, 7, target)
    loader = DataLoader(TensorDataset(x, batch), batch_size=9)
    pyg = [Batch(x=x[i:i + 11], batch=batch[i:i + 11])
           for i in range(0, 40, 11)]
    for source in (loader, pyg):
        s_out, s_grads = streamed(model, source, 7, target)
        assert_close(s_out, out, torch.float32)
        for key in grads:
            assert_close(s_grads[key], grads[key], torch.float32)
