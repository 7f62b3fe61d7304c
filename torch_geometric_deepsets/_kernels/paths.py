r"""Which code path a reduction takes: the host path, which may read values,
or the device path, which never does.

* **Host path** (:func:`host_path`): eager mode on the CPU, where reading a
  value costs no device synchronisation. It validates values, sums long sets
  in chunks (:mod:`~torch_geometric_deepsets._kernels.sums`) and picks the
  blocked max backward (:mod:`~torch_geometric_deepsets._kernels.extremes`).
* **Device path**: everything else (GPU and other devices,
  :func:`torch.compile` and :func:`torch.export` graphs, which cannot branch
  on data). It never reads a value and gives the same results up to
  floating-point rounding.
* **Compiled CPU graphs** (:func:`cpu_graph`) are traced on the device path,
  but max pooling and the pooled affine layer enter them as custom operators
  (:mod:`~torch_geometric_deepsets._kernels.custom_ops`) that run the host
  path's kernels at run time.

Code elsewhere calls these as :obj:`paths.host_path(x)` (a module
attribute), so that the tests can send CPU tensors down the device path by
replacing one function.
"""
import torch
from torch import Tensor

import torch_geometric.typing


def host_path(tensor: Tensor) -> bool:
    r"""Whether work on :obj:`tensor` runs on the host path: eager mode on
    the CPU."""
    return (tensor.device.type == 'cpu'
            and not torch.compiler.is_compiling())


def cpu_graph(tensor: Tensor) -> bool:
    r"""Whether work on :obj:`tensor` is traced by :func:`torch.compile` for
    the CPU (not by :func:`torch.export`).

    There max pooling and the pooled affine layer run as custom operators
    whose backward passes take the pooled input :math:`\mathbf{h}` itself:
    when nothing after it reads :math:`\mathbf{h}`, autograd's partitioner
    would otherwise keep the ReLU that computed it as a boolean mask, which
    inductor's CPU code stores much more slowly than the ReLU itself
    (measured in :doc:`/benchmarks`). Exported programs keep plain ATen
    operations, so that they run without this package; other devices keep
    the device path.
    """
    return (tensor.device.type == 'cpu' and torch.compiler.is_compiling()
            and not torch.compiler.is_exporting())


def use_torch_scatter() -> bool:
    r"""Whether the optional :mod:`torch_scatter` backend is used for the
    chunked sums of long sets."""
    return bool(torch_geometric.typing.WITH_TORCH_SCATTER)
