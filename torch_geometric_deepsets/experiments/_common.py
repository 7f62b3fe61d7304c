r"""What the experiment modules share besides :mod:`training`: the
command-line options every experiment takes, batched prediction, tables,
plots and the results file."""
import argparse
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_geometric.data import Batch, Dataset
from torch_geometric_deepsets.training import (
    DistributedContext,
    SetLoader,
    Trainer,
    main_process_first,
    write_json,
)

RESULTS_NAME = 'results.json'


@dataclass
class Outcome:
    r"""What an experiment returns: its results (as written to
    :obj:`results.json`) and the trained models by name."""
    results: Dict[str, Any]
    models: Dict[str, torch.nn.Module] = field(default_factory=dict)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1 (got {value})')
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f'must be positive (got {value})')
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f'must be non-negative (got {value})')
    return value


def add_common_arguments(parser: argparse.ArgumentParser, name: str,
                         steps: int, batch_size: int, lr: float,
                         threads: Optional[int] = None) -> None:
    r"""Options of every experiment, with its own defaults."""
    group = parser.add_argument_group('training')
    group.add_argument('--threads', type=positive_int, default=threads,
                       help='CPU threads of torch (default: '
                       f'{threads or "torch default"})')
    group.add_argument('--steps', type=positive_int, default=steps,
                       help=f'optimisation steps (default: {steps})')
    group.add_argument('--batch-size', type=positive_int, default=batch_size,
                       help=f'sets per step and process (default: '
                       f'{batch_size})')
    group.add_argument('--lr', type=positive_float, default=lr,
                       help=f'peak learning rate (default: {lr})')
    group.add_argument('--seed', type=int, default=0,
                       help='seed of the initialisation and data order '
                       '(default: 0)')
    group.add_argument('--data-seed', type=int, default=0,
                       help='seed of the generated sets (default: 0)')
    group.add_argument('--out', default=osp.join('runs', name),
                       help=f'checkpoint, metrics, results and plots go here '
                       f'(default: runs/{name})')
    group.add_argument('--data-root', default='data',
                       help='generated datasets go here (default: data)')
    group.add_argument('--fresh', action='store_true',
                       help='ignore an existing checkpoint and start over')
    group.add_argument('--checkpoint-every', type=positive_int, default=None,
                       help='steps between checkpoints (default: a tenth of '
                       '--steps)')
    group.add_argument('--log-every', type=positive_int, default=50,
                       help='steps between recorded losses (default: 50)')
    group.add_argument('--device', default=None,
                       help='cpu, cuda, cuda:1, ... (default: cuda:LOCAL_RANK '
                       'if available, else cpu)')
    group.add_argument('--no-progress', action='store_true',
                       help='no progress bars')
    group.add_argument('--no-plot', action='store_true',
                       help='skip the matplotlib plot')


def one_cycle(optimizer: torch.optim.Optimizer, max_lr: float,
              steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
    r"""The schedule of all experiments: 10 % warm-up to :obj:`max_lr`,
    then cosine annealing. OneCycleLR divides by zero for a warm-up under
    two steps, so runs shorter than 20 steps stop early in a 20-step
    cycle."""
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=max(steps, 20), pct_start=0.1)


def checkpoint_every(args: argparse.Namespace) -> int:
    return args.checkpoint_every or max(1, args.steps // 10)


def make_trainer(args: argparse.Namespace, ctx: DistributedContext,
                 model: torch.nn.Module, loss_fn: Callable, dataset: Any,
                 config: Dict[str, Any], **kwargs: Any) -> Trainer:
    r"""A :class:`Trainer` with the options every experiment takes from the
    command line (steps, batch size, learning rate with :func:`one_cycle`,
    checkpoints, resume, seed, progress, logging); :obj:`config` names the
    experiment under :obj:`"experiment"`, and :obj:`kwargs` (a different
    :obj:`out_dir`, :obj:`batch_size` or :obj:`desc`, an optimizer, an
    evaluation hook) override or extend the defaults."""
    options: Dict[str, Any] = dict(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        scheduler=lambda opt: one_cycle(opt, args.lr, args.steps),
        checkpoint_every=checkpoint_every(args), out_dir=args.out,
        resume=not args.fresh, seed=args.seed, dist=ctx,
        progress=not args.no_progress, log_every=args.log_every,
        desc=config['experiment'],
        config={**config, 'data_seed': args.data_seed})
    options.update(kwargs)
    return Trainer(model, loss_fn, dataset, **options)


def run_summary(trainer: Trainer, summary: Dict[str, Any]
                ) -> Dict[str, Any]:
    r"""The head of every experiment's :obj:`results.json`: what ran, for
    how long, and where the training loss ended."""
    return {
        'experiment': trainer.config['experiment'],
        'config': trainer.config,
        'steps': trainer.step,
        'train_time_s': round(trainer.elapsed, 2),
        'final_train_loss': summary['loss'],
    }


def add_image_source_arguments(group: Any) -> None:
    r"""The :obj:`--source` / :obj:`--mnist-root` options of the
    experiments on digit images."""
    group.add_argument('--source', choices=['sklearn', 'mnist'],
                       default='sklearn',
                       help='the digit images (default: sklearn)')
    group.add_argument('--mnist-root', default=None,
                       help='local torchvision MNIST root, for --source '
                       'mnist (never downloaded)')


def build_datasets(ctx: DistributedContext,
                   make: Callable[[], Any]) -> Any:
    r"""Calls :obj:`make` rank 0 first, so that one process generates and
    saves the files and the others load them."""
    with main_process_first(ctx):
        return make()


def final_evaluation(model: torch.nn.Module,
                     evaluate: Callable[[torch.nn.Module], Dict[str, Any]],
                     ) -> Dict[str, Any]:
    r"""Runs :obj:`evaluate(model)` in eval mode without gradients. The
    results of a run are always computed afresh like this rather than taken
    from the checkpoint, so that rerunning a finished run with other test
    settings (or newer evaluation code) reports on those."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = evaluate(model)
    model.train(was_training)
    return out


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: Dataset, device: torch.device,
            forward: Callable[[torch.nn.Module, Batch], Tensor],
            batch_size: int = 1024) -> Tuple[Tensor, List[Batch]]:
    r"""Runs :obj:`forward(model, batch)` over :obj:`dataset` in order, in
    eval mode; returns the concatenated outputs (on the CPU) and the
    batches."""
    was_training = model.training
    model.eval()
    outputs, batches = [], []
    for batch in SetLoader(dataset, batch_size, shuffle=False):
        outputs.append(forward(model, batch.to(device)).cpu())
        batches.append(batch)
    model.train(was_training)
    return torch.cat(outputs), batches


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]],
                 ) -> str:
    r"""A GitHub-markdown table (also readable in a terminal); floats get
    four significant digits."""
    cells = [[str(c) for c in columns]] + [[
        f'{v:.4g}' if isinstance(v, float) else str(v) for v in row
    ] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = [
        '| ' + ' | '.join(c.rjust(w) for c, w in zip(row, widths)) + ' |'
        for row in cells
    ]
    lines.insert(1, '|' + '|'.join('-' * (w + 1) + ':' for w in widths) + '|')
    return '\n'.join(lines)


def save_plot(path: str, draw: Callable[[Any], None]) -> Optional[str]:
    r"""Draws with matplotlib (Agg backend) into :obj:`path`; returns the
    path, or :obj:`None` when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed; no plot '
              "(pip install 'torch_geometric_deepsets[examples]')")
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=100)
    draw(ax)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_results(args: argparse.Namespace, results: Dict[str, Any]) -> str:
    path = osp.join(args.out, RESULTS_NAME)
    write_json(results, path)
    return path


def digit_sum_rows(pred: Tensor, target: Tensor,
                   sizes: Tensor) -> List[Dict[str, Any]]:
    r"""Per set size: the share of sets whose rounded prediction equals the
    true sum (exact-match accuracy), the mean absolute error and the number
    of sets."""
    rows = []
    for size in sorted(set(sizes.tolist())):
        mask = sizes == size
        rows.append({
            'size': int(size),
            'accuracy': float((pred[mask].round() == target[mask]).float()
                              .mean()),
            'mae': float((pred[mask] - target[mask]).abs().mean()),
            'num_sets': int(mask.sum()),
        })
    return rows
