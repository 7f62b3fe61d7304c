r"""Streamed pooling: the output and every parameter's gradient equal those
of the whole-set call, for every chunking of the rows."""
import pytest
import torch

from tests.streaming import (
    AGGRS,
    assert_close,
    chunkings,
    make_model,
    make_sets,
    streamed,
    whole,
)
from torch_geometric_deepsets import (
    Chunks,
    DeepSetsInvariant,
    SetAccumulator,
    pool,
    stream_encode,
)


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
    with pytest.raises(ValueError, match="one set id per row of 'x'"):
        stream_encode(model, [(torch.randn(3, 3), torch.zeros(2).long())])
    with pytest.raises(ValueError, match='out of range for dim_size=2'):
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
