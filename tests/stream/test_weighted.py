r"""Streamed sets with per-row weights give the whole-set weighted output and
its exact gradients; chunks name a wrong width as the whole-set call does;
PyG batches from a DataLoader get global set ids."""
import pytest
import torch

from tests.helpers import make_batch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric_deepsets import (
    Chunks,
    DeepSetsInvariant,
    SetAccumulator,
    pool,
    stream_encode,
)
from torch_geometric_deepsets.stream.chunks import read_chunks

STREAMED = ['sum', 'mean', 'max', 'min', 'var', 'std', 'softmax',
            'powermean', ['mean', 'max']]


def weighted_sets(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x, batch = make_batch([5, 0, 7, 1, 3], 3, torch.float64, shuffle=True,
                          generator=gen)
    weight = torch.rand(x.size(0), generator=gen, dtype=torch.float64)
    weight[::4] = 0.0  # absent rows, in several sets
    return x, batch, weight


@pytest.mark.parametrize('aggr', STREAMED)
@pytest.mark.parametrize('chunk_size', [1, 4, 100])
def test_streamed_weights_give_the_whole_set_output_and_gradients(
        aggr, chunk_size):
    x, batch, weight = weighted_sets()
    if aggr == 'powermean':
        x = x.abs() + 0.1
    width = 16 if isinstance(aggr, list) else 8
    torch.manual_seed(0)
    model = DeepSetsInvariant([3, 8, 8], [width, 2], aggr=aggr).double()
    whole = model(x, batch, dim_size=5, weight=weight)
    (whole ** 2).sum().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    chunks = Chunks(x, batch, chunk_size=chunk_size, weight=weight)
    streamed = stream_encode(model, chunks, dim_size=5)
    assert torch.allclose(streamed, whole, atol=1e-10)
    (streamed ** 2).sum().backward()
    for got, want in zip((p.grad for p in model.parameters()), expected):
        assert torch.allclose(got, want, atol=1e-9)


@pytest.mark.parametrize('aggr', ['sum', 'mean', 'max', 'softmax'])
def test_accumulator_takes_weights_per_update(aggr):
    x, batch, weight = weighted_sets(1)
    acc = SetAccumulator(aggr, dim_size=5)
    for start in range(0, x.size(0), 3):
        rows = slice(start, start + 3)
        acc.update(x[rows], batch[rows], weight[rows])
    expected = pool(x, batch, dim_size=5, aggr=aggr, weight=weight)
    assert torch.allclose(acc.compute(), expected, atol=1e-10)


def test_chunks_carry_weights_and_objects_may_have_them():
    x, batch, weight = weighted_sets()
    triples = list(Chunks(x, batch, chunk_size=6, weight=weight))
    assert all(len(t) == 3 for t in triples)
    assert torch.equal(torch.cat([t[2] for t in triples]), weight)
    assert all(len(p) == 2 for p in Chunks(x, batch, chunk_size=6))
    data = Batch.from_data_list([Data(x=torch.randn(3, 2),
                                      weight=torch.tensor([1., 0., 2.]))])
    (_, _, w), = read_chunks([data])
    assert torch.equal(w, torch.tensor([1., 0., 2.]))
    with pytest.raises(ValueError, match="'weight' must hold one entry per "
                       "row of 'x' .got 3 for 16 rows"):
        Chunks(x, batch, weight=weight[:3])


def test_a_chunk_of_another_width_is_named_as_in_the_whole_set_call():
    model = DeepSetsInvariant([4, 16], [16, 1])
    with pytest.raises(ValueError) as whole:
        model(torch.randn(6, 5))
    with pytest.raises(ValueError) as streamed:
        stream_encode(model, [torch.randn(6, 5)])
    assert str(streamed.value) == str(whole.value) == (
        "'x' has 5 features per element but the model expects 4")


def test_batches_from_a_dataloader_get_global_set_ids():
    torch.manual_seed(0)
    sets = [Data(x=torch.randn(n, 3)) for n in (2, 3, 0, 4, 1)]
    model = DeepSetsInvariant([3, 8, 8], [8, 2])
    whole = Batch.from_data_list(sets)
    expected = model(whole.x, whole.batch, dim_size=5)
    loader = DataLoader(sets, batch_size=2)
    streamed = stream_encode(model, loader, dim_size=5)
    assert torch.allclose(streamed, expected, atol=1e-6)
    (streamed.sum()).backward()  # the second pass offsets alike
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    expected.sum().backward()
    for got, want in zip(grads, (p.grad for p in model.parameters())):
        assert torch.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match='a chunk is a PyG Batch, whose set '
                       'ids count its own graphs from 0; across processes '
                       'give global set ids'):
        list(read_chunks(loader, distributed=True))
