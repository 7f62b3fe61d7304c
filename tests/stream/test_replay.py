r"""Streamed pooling: the output and every parameter's gradient equal those
of the whole-set call, for every chunking of the rows."""
import pytest
import torch

from tests.helpers import make_batch
from tests.streaming import (
    AGGRS,
    assert_close,
    chunkings,
    make_model,
    make_sets,
    streamed,
    whole,
)
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


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('name', list(AGGRS))
def test_streamed_output_and_gradients_equal_whole_set(name, dtype):
    model = make_model(name, dtype)
    x, batch = make_sets(dtype)
    dim_size = 7  # sets 2 and 6 are empty
    target = torch.randn(dim_size, 2, dtype=dtype)
    out, grads = whole(model, x, batch, dim_size, target)
    assert all(g.abs().sum() > 0 for g in grads.values())
    for kind, chunks in chunkings(x, batch).items():
        s_out, s_grads = streamed(model, chunks, dim_size, target)
        assert_close(s_out, out, dtype)
        assert s_grads.keys() == grads.keys()
        for key in grads:
            assert_close(s_grads[key], grads[key], dtype)


@pytest.mark.parametrize('name', ['sum', 'max', 'softmax', 'std'])
def test_one_set_without_ids(name):
    model = make_model(name, torch.float64)
    x = torch.randn(30, 3, dtype=torch.float64)
    target = torch.randn(1, 2, dtype=torch.float64)
    out, grads = whole(model, x, None, None, target)
    s_out, s_grads = streamed(model, list(x.split(7)), None, target)
    assert s_out.shape == (1, 2)
    assert_close(s_out, out, torch.float64)
    for key in grads:
        assert_close(s_grads[key], grads[key], torch.float64)


def test_dim_size_grows_with_the_ids_seen():
    model = make_model('mean', torch.float64)
    x, batch = make_sets(torch.float64)
    expected = model(x, batch)
    chunks = chunkings(x, batch)['shuffled']
    with torch.no_grad():
        got = stream_encode(model, iter(chunks))  # one pass: no gradient
    assert got.shape == expected.shape == (int(batch.max()) + 1, 2)
    assert_close(got, expected, torch.float64)


def test_dropout_in_phi_draws_the_same_masks_in_both_passes():
    phi = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(),
                              torch.nn.Dropout(0.5), torch.nn.Linear(16, 8))
    model = DeepSetsInvariant(phi, [8, 2], aggr='max').double()
    x, batch = make_sets(torch.float64)
    chunks = chunkings(x, batch)['shuffled']
    target = torch.randn(7, 2, dtype=torch.float64)

    torch.manual_seed(3)
    s_out, s_grads = streamed(model, chunks, 7, target)
    after = torch.rand(1)
    # The same masks drawn in the same order, with autograd throughout.
    torch.manual_seed(3)
    model.zero_grad()
    h = torch.cat([phi(c[0]) for c in chunks])
    ids = torch.cat([c[1] for c in chunks])
    out = model.rho(pool(h, ids, dim_size=7, aggr='max'))
    ((out - target)**2).sum().backward()
    assert_close(s_out, out.detach(), torch.float64)
    for name, param in model.named_parameters():
        assert_close(s_grads[name], param.grad, torch.float64)
    # The second pass leaves the random stream where the first left it.
    assert torch.equal(after, torch.rand(1))


def test_gradients_accumulate_across_backward_calls():
    model = make_model('mean', torch.float64)
    x, batch = make_sets(torch.float64)
    chunks = chunkings(x, batch)['shuffled']
    model.zero_grad()
    stream_encode(model, chunks, 7).sum().backward()
    once = [p.grad.clone() for p in model.parameters()]
    stream_encode(model, chunks, 7).sum().backward()
    for g, p in zip(once, model.parameters()):
        assert_close(p.grad, 2 * g, torch.float64)


def test_bad_input_gets_clear_errors():
    model = make_model('sum', torch.float32)
    with pytest.raises(TypeError, match="'chunks' is an iterator"):
        stream_encode(model, (c for c in [torch.randn(3, 3)]))
    with pytest.raises(TypeError, match="'model' must be a DeepSetsInvariant"):
        stream_encode(torch.nn.Linear(3, 3), [torch.randn(3, 3)])
    with pytest.raises(TypeError, match='every chunk must be a tensor'):
        stream_encode(model, [{'x': torch.randn(3, 3)}])
    with pytest.raises(ValueError, match="'batch' has 2 entries but 'x' has 3 "
                       "rows"):
        stream_encode(model, [(torch.randn(3, 3), torch.zeros(2).long())])
    with pytest.raises(ValueError, match=r"'batch' holds set ids in \[0, 2\] "
                       r"but 'dim_size' is 2"):
        stream_encode(model, [(torch.randn(3, 3), torch.tensor([0, 1, 2]))],
                      dim_size=2)
    with pytest.raises(ValueError, match='no rows were seen'):
        stream_encode(model, [])
    with pytest.raises(ValueError, match="'chunk_size' must be a positive"):
        Chunks(torch.randn(3, 3), chunk_size=0)
    acc = SetAccumulator('sum')
    acc.update(torch.randn(2, 3))
    with pytest.raises(ValueError, match='same width .got 4 after 3'):
        acc.update(torch.randn(2, 4))


# Weighted rows; set ids across chunks; the width of a chunk ##############

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
