r"""Transforms that turn PyG meshes and point clouds into sets, and the
per-axis scaling of the `"Deep Sets" <https://arxiv.org/abs/1703.06114>`_
paper's point-cloud augmentation.

The paper's rotation about the :math:`z`-axis by an angle in
:math:`\pm 0.1\pi` is PyG's own
:class:`torch_geometric.transforms.RandomRotate` with :obj:`degrees=18` and
:obj:`axis=2`. PyG's rotation moves :obj:`pos` only, so on meshes apply it
(and :class:`RandomAxisScale`) *before*
:class:`~torch_geometric.transforms.SamplePoints` computes normals, e.g.

.. code-block:: python

    import torch_geometric.transforms as T

    transform = T.Compose([
        T.NormalizeScale(),
        T.RandomRotate(18, axis=2),          # z-rotation in +-0.1 pi
        RandomAxisScale((0.8, 1.25)),        # per-axis scaling
        T.SamplePoints(1000, include_normals=True),
        ToSet(normal=True),                  # x = [pos || normal]
    ])
"""
from typing import Any, Sequence, Tuple

import torch

from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform
from torch_geometric_deepsets.checks import is_real

# Connectivity that a set has no use for; `Data.edge_attrs()` adds any other
# edge-level attribute of the object at hand.
_CONNECTIVITY = ('face', 'edge_index', 'edge_attr', 'edge_weight', 'adj',
                 'adj_t')


def _rows(name: str, value: Any, num_rows: int) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"'data.{name}' must be a torch.Tensor "
                        f"(got {type(value).__name__})")
    value = value.view(-1, 1) if value.dim() == 1 else value
    if value.dim() != 2 or value.size(0) != num_rows:
        raise ValueError(f"'data.{name}' has shape {tuple(value.shape)} but "
                         f"the set has {num_rows} elements; it needs one row "
                         f"per element")
    return value


class ToSet(BaseTransform):
    r"""Turns a mesh or point cloud :class:`~torch_geometric.data.Data` into
    an edgeless set for the models of the `"Deep Sets"
    <https://arxiv.org/abs/1703.06114>`_ paper: the connectivity
    (:obj:`face`, :obj:`edge_index` and every edge-level attribute) is
    dropped and the element features are built from the points,

    .. math::
        \mathbf{x}_i = \left[ \mathbf{p}_i \,\Vert\, \mathbf{n}_i \,\Vert\,
        \mathbf{x}^{\mathrm{old}}_i \right],

    with the position :math:`\mathbf{p}_i` (:obj:`data.pos`), the normal
    :math:`\mathbf{n}_i` (:obj:`data.normal`, as written by
    :class:`~torch_geometric.transforms.SamplePoints` with
    :obj:`include_normals=True`) and the existing features
    :math:`\mathbf{x}^{\mathrm{old}}_i` (:obj:`data.x`, e.g. the normals of
    :class:`~torch_geometric.datasets.ShapeNet`), each included as chosen.
    Graph- and element-level targets (:obj:`y`, :obj:`category`, ...) and
    :obj:`pos` stay as they are.

    Args:
        pos (bool, optional): Include the positions. (default: :obj:`True`)
        normal (bool, optional): Include :obj:`data.normal`.
            (default: :obj:`False`)
        features (bool, optional): Include the existing :obj:`data.x`;
            otherwise it is replaced. (default: :obj:`False`)

    Shapes:
        - **input:** :obj:`pos` :math:`(N, D)`, optionally :obj:`normal`
          :math:`(N, D)`, :obj:`x` :math:`(N, F)`, :obj:`face` or
          :obj:`edge_index`
        - **output:** :obj:`x` :math:`(N, F')` and no connectivity
    """
    def __init__(self, pos: bool = True, normal: bool = False,
                 features: bool = False) -> None:
        if not (pos or normal or features):
            raise ValueError("ToSet needs at least one of 'pos', 'normal' "
                             "and 'features' to build 'x' from")
        self.pos = pos
        self.normal = normal
        self.features = features

    def forward(self, data: Data) -> Data:
        if not isinstance(data, Data):
            raise TypeError(f"ToSet expects a torch_geometric.data.Data "
                            f"object (got {type(data).__name__})")
        num_rows = data.num_nodes
        if num_rows is None:
            raise ValueError("ToSet cannot tell the number of elements of a "
                             "Data object without 'pos' or 'x'")
        parts = []
        for name, wanted, hint in (
            ('pos', self.pos, ''),
            ('normal', self.normal, "; sample points with "
             "SamplePoints(..., include_normals=True) first"),
            ('x', self.features, ''),
        ):
            if not wanted:
                continue
            value = getattr(data, name, None)
            if value is None:
                raise ValueError(f"ToSet was asked to include 'data.{name}' "
                                 f"but the Data object has none{hint}")
            parts.append(_rows(name, value, num_rows))

        dtypes = [p.dtype for p in parts if p.is_floating_point()]
        dtype = dtypes[0] if dtypes else torch.get_default_dtype()
        x = torch.cat([p.to(dtype) for p in parts], dim=-1)

        for key in set(_CONNECTIVITY) | set(data.edge_attrs()):
            if key in data:
                del data[key]
        data.x = x
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(pos={self.pos}, '
                f'normal={self.normal}, features={self.features})')


class RandomAxisScale(BaseTransform):
    r"""Scales every axis of the node positions by its own random factor, the
    per-axis scaling augmentation of the point-cloud experiments of the
    `"Deep Sets" <https://arxiv.org/abs/1703.06114>`_ paper:

    .. math::
        \mathbf{p}_i \leftarrow \mathbf{p}_i \,
        \mathrm{diag}(s_1, \ldots, s_D), \qquad
        s_d \sim \mathcal{U}(a, b) \text{ independently}.

    (PyG's :class:`~torch_geometric.transforms.RandomScale` draws one factor
    for all axes.) Normals (:obj:`data.normal`) are mapped by the inverse
    transpose, :math:`\mathbf{n}_i \leftarrow \mathbf{n}_i \,
    \mathrm{diag}(1/s_1, \ldots, 1/s_D)`, and re-normalised, so they stay
    perpendicular to the scaled surface. Factors are drawn from
    :func:`torch.rand`, so :func:`torch.manual_seed` makes them repeatable.

    Args:
        scales (tuple): The interval :math:`(a, b)`,
            :math:`0 < a \leq b`. (default: :obj:`(0.8, 1.25)`)
    """
    def __init__(self, scales: Tuple[float, float] = (0.8, 1.25)) -> None:
        if not isinstance(scales, Sequence) or len(scales) != 2 or not all(
                is_real(s) for s in scales):
            raise ValueError(f"'scales' must be a pair (a, b) of numbers "
                             f"(got {scales!r})")
        low, high = float(scales[0]), float(scales[1])
        if not 0 < low <= high:
            raise ValueError(f"'scales' must satisfy 0 < a <= b "
                             f"(got {scales!r})")
        self.scales = (low, high)

    def forward(self, data: Data) -> Data:
        pos = getattr(data, 'pos', None)
        if pos is None:
            raise ValueError("RandomAxisScale needs 'data.pos'")
        if pos.dim() != 2:
            raise ValueError(f"'data.pos' must be two-dimensional [N, D] "
                             f"(got shape {tuple(pos.shape)})")
        low, high = self.scales
        scale = low + (high - low) * torch.rand(pos.size(-1))
        scale = scale.to(pos.device, pos.dtype)
        data.pos = pos * scale
        normal = getattr(data, 'normal', None)
        if normal is not None:
            if normal.shape != pos.shape:
                raise ValueError(f"'data.normal' has shape "
                                 f"{tuple(normal.shape)} but 'data.pos' has "
                                 f"{tuple(pos.shape)}; they must match")
            data.normal = torch.nn.functional.normalize(normal / scale,
                                                        dim=-1)
        return data

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.scales})'
