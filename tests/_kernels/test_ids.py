r"""Set ids from ptr, as PyG computes them."""
import torch

import torch_geometric_deepsets._kernels as kernels
from torch_geometric.index import ptr2index


def test_ptr_to_index_is_pygs_ptr2index():
    for ptr in ([0], [0, 0], [0, 3, 3, 4, 9, 9]):
        ptr = torch.tensor(ptr)
        expected = ptr2index(ptr, int(ptr[-1]))
        assert torch.equal(kernels.ptr_to_index(ptr, int(ptr[-1])), expected)
