import pytest
import torch

from torch_geometric_deepsets import training


@pytest.mark.parametrize('local_rank', ['0', '1'])
def test_bare_cuda_device_gets_the_local_rank(monkeypatch, local_rank):
    # torch.cuda.set_device(torch.device('cuda')) raises on a GPU machine
    # ("Expected a torch.device with a specified index"): init_distributed
    # must fill in this process's index.
    chosen = []
    monkeypatch.setattr(torch.cuda, 'set_device', chosen.append)
    monkeypatch.setenv('LOCAL_RANK', local_rank)
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    monkeypatch.delenv('RANK', raising=False)
    ctx = training.init_distributed(device='cuda')
    assert ctx.device == torch.device('cuda', int(local_rank))
    assert chosen == [torch.device('cuda', int(local_rank))]
    ctx = training.init_distributed(device='cuda:3')
    assert ctx.device == torch.device('cuda', 3)
