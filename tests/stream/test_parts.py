r"""The parts a pooling streams as (sums, extremes, softmax, ...): tied
extremes share the gradient as the whole-set path does; poolings that do not
decompose are refused by name."""
import pytest
import torch

from tests.streaming import (
    assert_close,
    chunkings,
    make_sets,
    streamed,
    whole,
)
from torch_geometric_deepsets import (
    DeepSetsInvariant,
    FSPool,
    JanossyPooling,
    SetAccumulator,
    pool,
    stream_encode,
)


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
