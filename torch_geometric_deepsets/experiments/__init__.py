r"""The experiments of the `"Deep Sets" <https://arxiv.org/abs/1703.06114>`_
paper, run as :obj:`python -m torch_geometric_deepsets.experiments NAME`
(see :func:`main`). Each experiment module defines :obj:`NAME`,
:obj:`HELP`, :obj:`add_arguments(parser)` and :obj:`run(args, ctx)`."""
from torch_geometric_deepsets.experiments._common import Outcome
from torch_geometric_deepsets.experiments.cli import EXPERIMENTS, cli, main

__all__ = ['EXPERIMENTS', 'Outcome', 'main', 'cli']
