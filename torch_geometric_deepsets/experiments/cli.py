r"""The command line: :obj:`python -m torch_geometric_deepsets.experiments
NAME [options]`, unchanged under :obj:`torchrun`."""
import argparse
import sys
from typing import List, Optional

import torch

from torch_geometric_deepsets.experiments import (
    digit_sum_images,
    digit_sum_text,
    population_statistics,
    set_anomaly,
)
from torch_geometric_deepsets.experiments._common import Outcome
from torch_geometric_deepsets.training import (
    close_distributed,
    init_distributed,
)

EXPERIMENTS = {
    module.NAME: module
    for module in (digit_sum_text, digit_sum_images,
                   population_statistics, set_anomaly)
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m torch_geometric_deepsets.experiments',
        description='Reproduce the experiments of "Deep Sets" (Zaheer et '
        'al., 2017). Runs unchanged under torchrun --nproc_per_node=N '
        '(PyTorch DDP; gloo on CPU, nccl on GPU).')
    sub = parser.add_subparsers(dest='experiment', metavar='NAME',
                                required=True)
    for name, module in EXPERIMENTS.items():
        # argparse %-formats help strings (not descriptions).
        module.add_arguments(sub.add_parser(name,
                                            help=module.HELP.replace('%',
                                                                     '%%'),
                                            description=module.HELP))
    return parser


def main(argv: Optional[List[str]] = None) -> Outcome:
    r"""Parses :obj:`argv` (default: :obj:`sys.argv[1:]`), joins the
    distributed run if launched by :obj:`torchrun`, and runs the
    experiment; returns its :class:`Outcome`."""
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    ctx = init_distributed(device=args.device)
    # The experiment's trainer is freed when run() returns, before the
    # group is left. After a failure the group is not left: that waits for
    # every process, and the others may be waiting elsewhere; the exit
    # lets torchrun stop them.
    outcome = EXPERIMENTS[args.experiment].run(args, ctx)
    close_distributed(ctx)
    return outcome


def cli() -> None:
    r"""Console-script entry point (returns nothing, so the exit status is
    0 on success)."""
    main(sys.argv[1:])
