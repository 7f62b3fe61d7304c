r"""Streamed pooling: the output and every parameter's gradient equal those
of the whole-set call, for every chunking of the rows."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from torch_geometric.data import Batch
from torch_geometric.nn.aggr import (
    PowerMeanAggregation,
    SoftmaxAggregation,
    StdAggregation,
    VarAggregation,
)
from torch_geometric_deepsets import (
    Chunks,
    DeepSetsInvariant,
    FSPool,
    JanossyPooling,
    SetAccumulator,
    pool,
    stream_encode,
)

# (aggr, rho input width for phi's 8 output channels)
AGGRS = {
    'sum': ('sum', 8),
    'mean': ('mean', 8),
    'max': ('max', 8),
    'min': ('min', 8),
    'var': ('var', 8),
    'std': ('std', 8),
    'softmax': (lambda: SoftmaxAggregation(t=2.0), 8),
    'softmax_learn': (lambda: SoftmaxAggregation(learn=True, channels=8), 8),
    'softmax_semi': (lambda: SoftmaxAggregation(t=0.5, semi_grad=True), 8),
    'powermean': (lambda: PowerMeanAggregation(learn=True), 8),
    'var_semi': (lambda: VarAggregation(semi_grad=True), 8),
    'sum_max_std': (lambda: ['sum', 'max', StdAggregation()], 24),
}

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5),
       torch.float64: dict(rtol=1e-10, atol=1e-12)}


def make_model(name, dtype, phi=None):
    aggr, width = AGGRS[name]
    aggr = aggr() if callable(aggr) else aggr
    model = DeepSetsInvariant(phi or [3, 16, 8], [width, 16, 2], aggr=aggr)
    with torch.no_grad():  # learnable t and p away from their neutral 1
        for param in model.aggr_module.parameters():
            param.uniform_(0.5, 2.0)
    return model.to(dtype)


def make_sets(dtype, num_rows=40, num_sets=6):
    x = torch.randn(num_rows, 3, dtype=dtype)
    batch = torch.randint(0, num_sets, (num_rows, ))
    batch[batch == 2] = 3  # set 2 is empty
    return x, batch


def whole(model, x, batch, dim_size, target):
    model.zero_grad()
    out = model(x, batch, dim_size=dim_size)
    loss = ((out - target)**2).sum()
    loss.backward()
    return out.detach(), {n: p.grad.clone()
                          for n, p in model.named_parameters()}


def streamed(model, chunks, dim_size, target, **kwargs):
    model.zero_grad()
    out = stream_encode(model, chunks, dim_size=dim_size, **kwargs)
    loss = ((out - target)**2).sum()
    loss.backward()
    return out.detach(), {n: p.grad.clone()
                          for n, p in model.named_parameters()}


def chunkings(x, batch):
    r"""Chunks of one row; rows of many sets in random order and uneven
    chunks; each set spread over all chunks; one chunk without rows."""
    perm = torch.randperm(x.size(0))
    cuts = [0, 5, 6, 19, 33, x.size(0)]
    by_set = torch.argsort(batch, stable=True)
    spread = torch.cat([by_set[i::3] for i in range(3)])
    return {
        'single_rows': [(x[i:i + 1], batch[i:i + 1])
                        for i in range(x.size(0))],
        'shuffled': [(x[perm[a:b]], batch[perm[a:b]])
                     for a, b in zip(cuts[:-1], cuts[1:])],
        'spread': [(x[spread[i::4]], batch[spread[i::4]]) for i in range(4)],
        'with_empty_chunk': [(x[:0], batch[:0]), (x, batch)],
    }


def assert_close(a, b, dtype):
    torch.testing.assert_close(a, b, **TOL[dtype])


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


@pytest.mark.parametrize('aggr', ['max', 'min'])
def test_tied_extremes_share_the_gradient_as_the_whole_set_path(aggr):
    # Every row twice: each extreme is held by two rows (in different
    # chunks), and gradient reaches phi's parameters through both.
    phi = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 8))
    model = DeepSetsInvariant(phi, [8, 2], aggr=aggr).double()
    x, batch = make_sets(torch.float64, num_rows=20)
    x, batch = torch.cat([x, x]), torch.cat([batch, batch])
    with torch.no_grad():
        h = phi(x)
        pooled = pool(h, batch, dim_size=7, aggr=aggr)
        ties = (h == pooled[batch]).double()
        ties = torch.zeros_like(pooled).index_add_(0, batch, ties)
    assert ties[ties > 0].min() == 2  # the data really has tied extremes
    target = torch.randn(7, 2, dtype=torch.float64)
    out, grads = whole(model, x, batch, 7, target)
    for chunks in chunkings(x, batch).values():
        s_out, s_grads = streamed(model, chunks, 7, target)
        assert_close(s_out, out, torch.float64)
        for key in grads:
            assert_close(s_grads[key], grads[key], torch.float64)


def test_tied_maxima_each_get_an_equal_share():
    # Hand-made: set 0 holds its maximum 3 twice, set 1 once.
    acc_phi = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        acc_phi.weight.fill_(1.0)
    model = DeepSetsInvariant(torch.nn.Sequential(acc_phi), [1, 1],
                              aggr='max')
    x = torch.tensor([[3.0], [1.0], [3.0], [2.0], [5.0]])
    batch = torch.tensor([0, 0, 0, 1, 1])
    h_grad = {}

    def keep(_, inputs, output):
        if output.requires_grad:  # the second pass
            output.register_hook(
                lambda g: h_grad.setdefault('g', []).append(g))

    acc_phi.register_forward_hook(keep)
    out = stream_encode(model, [(x[:2], batch[:2]), (x[2:], batch[2:])])
    out.sum().backward()
    rho_weight = float(model.rho.lins[0].weight.detach())
    grads = torch.cat(h_grad['g']).flatten()
    expected = torch.tensor([0.5, 0.0, 0.5, 0.0, 1.0]) * rho_weight
    torch.testing.assert_close(grads, expected)


@pytest.mark.parametrize('aggr', ['sum', 'mean'])
def test_pooling_moves_in_front_of_the_last_affine_layer(aggr):
    for phi in ([3, 16, 8], torch.nn.Sequential(
            torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))):
        model = DeepSetsInvariant(phi, [8, 2], aggr=aggr).double()
        acc = SetAccumulator(model.aggr_module, phi=model.phi)
        assert acc.lin is not None  # the state holds phi's hidden rows
        assert acc.element_rows(torch.randn(4, 3).double()).size(-1) == 16
        x, batch = make_sets(torch.float64)
        target = torch.randn(7, 2, dtype=torch.float64)
        out, grads = whole(model, x, batch, 7, target)
        s_out, s_grads = streamed(model, chunkings(x, batch)['shuffled'], 7,
                                  target)
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


def test_accumulator_equals_pool_and_resets():
    x, batch = make_sets(torch.float32)
    for aggr in ['sum', 'mean', 'max', 'min', 'var', 'std', 'softmax',
                 'powermean', ['mean', 'max']]:
        acc = SetAccumulator(aggr, dim_size=7)
        for chunk in chunkings(x, batch)['spread']:
            acc.update(*chunk)
        expected = pool(x, batch, dim_size=7, aggr=aggr)
        torch.testing.assert_close(acc.compute(), expected, **TOL[
            torch.float32])
        acc.reset()
        acc.update(x[:3], torch.zeros(3, dtype=torch.long))
        assert acc.compute().shape == (7, expected.size(-1))
    assert repr(SetAccumulator('max', dim_size=3)) == \
        'SetAccumulator(aggr=MaxAggregation(), num_sets=3)'


def test_accumulator_with_phi_equals_the_model_pooling():
    model = make_model('softmax', torch.float64)
    x, batch = make_sets(torch.float64)
    acc = SetAccumulator(model.aggr_module, phi=model.phi, dim_size=7)
    for chunk in chunkings(x, batch)['single_rows']:
        acc.update(*chunk)
    expected = pool(model.phi(x), batch, dim_size=7,
                    aggr=model.aggr_module)
    assert_close(acc.compute(), expected, torch.float64)


def test_long_float32_set_keeps_float32_accuracy():
    # 2^20 rows near 1000 in chunks: a float32 running sum drifts by ~1 %.
    x = torch.full((2**20, 1), 1000.0) + torch.rand(2**20, 1)
    acc = SetAccumulator('sum')
    for chunk in x.split(2**16):
        acc.update(chunk)
    exact = x.double().sum()
    assert abs(float(acc.compute()) - float(exact)) / float(exact) < 1e-6


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


@pytest.mark.parametrize('aggr,why', [
    ('median', 'sorts the values'),
    (['sum', 'median'], 'MedianAggregation: it sorts'),
    ('sort', 'SortAggregation: it sorts'),
    ('lstm', 'LSTMAggregation: it reads a set as ordered sequences'),
    ('set_transformer', 'attention compares every element'),
])
def test_non_decomposable_pooling_is_refused_with_its_name(aggr, why):
    kwargs = {'lstm': dict(in_channels=8, out_channels=8),
              'sort': dict(k=2),
              'set_transformer': dict(channels=8, num_seed_points=1)}
    aggr_kwargs = kwargs.get(aggr) if isinstance(aggr, str) else None
    with pytest.raises(ValueError, match=f'streaming cannot pool with .*'
                       f'{why}.*Streamable poolings'):
        SetAccumulator(aggr, aggr_kwargs=aggr_kwargs)


def test_package_set_poolings_are_refused():
    with pytest.raises(ValueError, match='FSPool: it sorts'):
        SetAccumulator(FSPool(8, 4))
    with pytest.raises(ValueError, match='JanossyPooling: it reads a set'):
        SetAccumulator(JanossyPooling([8, 8], [8, 1], k=2))
    model = DeepSetsInvariant([3, 8], [8, 1], aggr='median')
    with pytest.raises(ValueError, match='MedianAggregation'):
        stream_encode(model, [torch.randn(4, 3)])


def test_phi_normalising_over_rows_is_refused():
    model = DeepSetsInvariant([3, 8, 8], [8, 1], norm='graph_norm')
    with pytest.raises(ValueError, match="'phi' with GraphNorm"):
        stream_encode(model, [torch.randn(4, 3)])
    phi = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8))
    model = DeepSetsInvariant(phi, [8, 1])
    with pytest.raises(ValueError, match='BatchNorm1d in training mode'):
        stream_encode(model, [torch.randn(4, 3)])
    phi.eval()  # per-row in eval mode: allowed
    expected = model(torch.randn(4, 3))
    assert stream_encode(model, [torch.randn(4, 3)]).shape == expected.shape


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


def test_lightning_manual_optimisation_equals_a_plain_loop(tmp_path):
    L = pytest.importorskip('lightning')
    from tests.example_scripts import load
    example = load('streaming')
    data, y = example.write_sets(str(tmp_path / 'sets.f32'), num_sets=3,
                                 set_size=500)
    torch.manual_seed(0)
    model = example.build_model()
    plain = example.build_model()
    plain.load_state_dict(model.state_dict())
    start = {k: v.clone() for k, v in model.state_dict().items()}

    task = example.StreamedRegression(model, lr=1e-2)
    trainer = L.Trainer(max_epochs=2, accelerator='cpu', logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(task, example.loader(data, y, 500, chunk_size=128))

    # The same steps as a plain optimiser loop over whole sets in memory.
    optimizer = torch.optim.Adam(plain.parameters(), lr=1e-2)
    rows = torch.from_numpy(np.array(data)).view(3, 500, 3)
    for _ in range(2):
        for i in range(3):
            optimizer.zero_grad()
            out = plain(rows[i]).view(-1)
            torch.nn.functional.mse_loss(out, y[i:i + 1]).backward()
            optimizer.step()
    moved = 0.0
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, plain.state_dict()[key],
                                   rtol=1e-4, atol=1e-5, msg=key)
        moved = max(moved, float((value - start[key]).abs().max()))
    assert moved > 1e-3  # the six steps really trained
    del data
