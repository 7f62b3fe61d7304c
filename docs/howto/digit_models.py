r"""The model of the text digit-sum task, as a builder that a checkpoint can
import again: save this file as ``digit_models.py`` beside your script (or
anywhere on ``sys.path``)."""
from torch import nn

from torch_geometric_deepsets import DeepSetsInvariant


def build_model(embedding_dim=100, hidden=30):
    r"""Embedding -> Dense(hidden, tanh) -> sum -> Dense(1)."""
    phi = nn.Sequential(
        nn.Embedding(10, embedding_dim),
        nn.Flatten(1),  # x holds one token per row: [N, 1] -> [N, dim]
        nn.Linear(embedding_dim, hidden),
        nn.Tanh(),
    )
    return DeepSetsInvariant(phi=phi, rho=nn.Linear(hidden, 1), aggr='sum')
