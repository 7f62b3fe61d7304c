r"""The loader of :mod:`torch_geometric_deepsets.lightning`: PyG's batches,
gathered row by row; one order per seed and epoch, sharded, resumable."""
import torch

from tests.helpers import RandomSets
from torch_geometric.data import Batch
from torch_geometric_deepsets.lightning import SetLoader


def test_set_loader_matches_pyg_collation():
    dataset = RandomSets(50)
    loader = SetLoader(dataset, batch_size=7, shuffle=True, seed=1)
    loader.sampler.set_epoch(2)
    order = list(loader.sampler)
    batches = list(loader)
    assert len(batches) == len(loader) == 8  # ceil(50 / 7)
    for i, batch in enumerate(batches):
        chunk = order[7 * i:7 * i + 7]
        ref = Batch.from_data_list([dataset[j] for j in chunk])
        for key in ('x', 'y', 'tag', 'batch', 'ptr'):
            assert torch.equal(batch[key], ref[key]), key
        assert batch.num_graphs == len(chunk)

    # Subsets (index_select, and a slice, whose indices are a range) hold
    # their own sets only.
    subset = dataset[torch.tensor([4, 9, 1])]
    batch = next(iter(SetLoader(subset, batch_size=3)))
    ref = Batch.from_data_list([dataset[4], dataset[9], dataset[1]])
    assert torch.equal(batch.x, ref.x) and torch.equal(batch.y, ref.y)
    batch = next(iter(SetLoader(dataset[5:9], batch_size=10)))
    ref = Batch.from_data_list([dataset[i] for i in range(5, 9)])
    for key in ('x', 'y', 'tag', 'batch', 'ptr'):
        assert torch.equal(batch[key], ref[key]), key

    # With a transform, PyG's collation runs instead (same result).
    dataset.transform = lambda data: data
    batch = next(iter(SetLoader(dataset, batch_size=4)))
    ref = Batch.from_data_list([dataset[i] for i in range(4)])
    assert torch.equal(batch.x, ref.x) and torch.equal(batch.ptr, ref.ptr)


def test_set_loader_order_shards_and_resume_state():
    dataset = RandomSets(40)

    def order(**kwargs):
        loader = SetLoader(dataset, 4, shuffle=True, **kwargs)
        loader.sampler.set_epoch(kwargs.pop('epoch', 0))
        return [b.y.view(-1).tolist() for b in loader]

    epoch0 = order(seed=5)
    assert sorted(sum(epoch0, [])) == sorted(dataset.y.tolist())
    assert order(seed=5) == epoch0 and order(seed=6) != epoch0
    loader = SetLoader(dataset, 4, shuffle=True, seed=5)
    loader.sampler.set_epoch(1)
    epoch1 = [b.y.view(-1).tolist() for b in loader]
    assert epoch1 != epoch0

    # Two replicas split every epoch into disjoint halves.
    shards = [sum(order(seed=5, num_replicas=2, rank=r), []) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == sorted(dataset.y.tolist())
    assert not set(shards[0]) & set(shards[1])

    # The state after 3 batches resumes with the 4th, in a new loader, and
    # only in the epoch it was taken in.
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.state_dict()
    assert state == {'epoch': 1, 'batches': 3}
    resumed = SetLoader(dataset, 4, shuffle=True, seed=5)
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(1)
    rest = [b.y.view(-1).tolist() for b in resumed]
    assert rest == epoch1[3:]
    assert resumed.state_dict() == {'epoch': 1, 'batches': 10}
    assert len(resumed) == 10  # Lightning counts the whole epoch
    ended = SetLoader(dataset, 4, shuffle=True, seed=5)
    ended.load_state_dict({'epoch': 1, 'batches': 10})
    ended.sampler.set_epoch(2)  # the checkpoint closed epoch 1
    assert len(list(ended)) == 10

    # Iterating leaves the global RNG alone; workers give the same batches.
    state = torch.get_rng_state()
    list(loader)
    assert torch.equal(state, torch.get_rng_state())
    workers = SetLoader(dataset, 4, shuffle=True, seed=5, num_workers=1)
    workers.sampler.set_epoch(1)
    assert [b.y.view(-1).tolist() for b in workers] == epoch1
