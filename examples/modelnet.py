r"""The point-cloud classifier of the `"Deep Sets"
<https://arxiv.org/abs/1703.06114>`_ paper on ModelNet40.

Each object's mesh is centred and scaled into the unit ball
(:class:`~torch_geometric.transforms.NormalizeScale`, once, as a
pre-transform, in place of the authors' per-object standardisation),
augmented as in the paper (rotation about :math:`z` by an
angle in :math:`\pm 0.1\pi`, per-axis scaling by factors in
:math:`\mathcal{U}(0.8, 1.25)`), sampled to a point cloud and turned into an
edgeless set (:class:`~torch_geometric_deepsets.ToSet`). Training points are
sampled afresh every epoch; the test clouds are sampled once, so the test
accuracy of every epoch is measured on the same points. The model is
:class:`~torch_geometric_deepsets.DeepSetsPointCloud` trained like the
authors' code: Adam (lr :math:`10^{-3}`, weight decay :math:`10^{-7}`),
batches of 64, gradient norm clipped at 5, the learning rate divided by 10
at 40 % and 80 % of training (epochs 400 and 800 of 1000).

The shared :class:`~torch_geometric_deepsets.training.Trainer` runs the loop:
progress bar, per-epoch test accuracy, ``checkpoint.pt`` and
``metrics.json`` in ``--out`` every epoch (a rerun resumes from them), and
this script adds ``learning_curve.png``. It also runs data-parallel under
``torchrun --nproc_per_node=N examples/modelnet.py ...``.

Usage (PyG downloads ModelNet40, ~0.5 GB, into ``--root`` if it is not
there)::

    python examples/modelnet.py --root data/ModelNet40 --num-points 1000
    python examples/modelnet.py --root data/ModelNet40 --num-points 5000 \
        --workers 8                          # width 512, as in the paper

The paper reports 82 / 87 / 90 % test accuracy with 100 / 1000 / 5000
points after 1000 epochs.
"""
import argparse
import math
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

import torch_geometric.transforms as T
from torch_geometric.data import Batch, Data
from torch_geometric.datasets import ModelNet
from torch_geometric.loader import DataLoader
from torch_geometric_deepsets import DeepSetsPointCloud, RandomAxisScale, ToSet
from torch_geometric_deepsets.training import (
    Trainer,
    close_distributed,
    init_distributed,
    main_process_first,
    seed_everything,
)


def train_transform(num_points: int) -> T.Compose:
    r"""The paper's augmentation, applied to the mesh before sampling."""
    return T.Compose([
        T.RandomRotate(18, axis=2),  # 0.1 pi = 18 degrees
        RandomAxisScale((0.8, 1.25)),
        T.SamplePoints(num_points),
        ToSet(),
    ])


def test_transform(num_points: int) -> T.Compose:
    return T.Compose([T.SamplePoints(num_points), ToSet()])


def load_datasets(root: str, name: str, num_points: int, seed: int):
    r"""The training set (augmented and re-sampled on every access) and the
    test clouds, sampled once with :obj:`seed`."""
    train = ModelNet(root, name, train=True,
                     transform=train_transform(num_points),
                     pre_transform=T.NormalizeScale())
    test = ModelNet(root, name, train=False,
                    transform=test_transform(num_points),
                    pre_transform=T.NormalizeScale())
    # Fixed test points, without touching the global random state.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        test_clouds = [test[i] for i in range(len(test))]
    return train, test_clouds


@torch.no_grad()
def accuracy(model: torch.nn.Module, clouds: Sequence[Data],
             batch_size: int, device: torch.device) -> float:
    model.eval()
    correct = 0
    for batch in DataLoader(list(clouds), batch_size=batch_size):
        batch = batch.to(device)
        pred = model(batch.x, batch.batch, dim_size=batch.num_graphs)
        correct += int((pred.argmax(-1) == batch.y).sum())
    return correct / len(clouds)


def loss_fn(model: torch.nn.Module, batch: Batch) -> Tensor:
    out = model(batch.x, batch.batch, dim_size=batch.num_graphs)
    return F.cross_entropy(out, batch.y)


def plot_learning_curve(history: List[Dict[str, Any]],
                        evals: List[Dict[str, Any]], steps_per_epoch: int,
                        path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax_loss = plt.subplots(figsize=(6, 4))
    ax_loss.plot([h['step'] / steps_per_epoch for h in history],
                 [h['loss'] for h in history], color='tab:blue',
                 label='training loss')
    ax_loss.set_xlabel('epoch')
    ax_loss.set_ylabel('training loss', color='tab:blue')
    ax_acc = ax_loss.twinx()
    ax_acc.plot([e['step'] / steps_per_epoch for e in evals],
                [100 * e['test_acc'] for e in evals], 'o-',
                color='tab:orange', label='test accuracy')
    ax_acc.set_ylabel('test accuracy (%)', color='tab:orange')
    ax_loss.set_title('Deep Sets on ModelNet')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(
        description='Deep Sets point-cloud classifier on ModelNet')
    parser.add_argument('--root', default=osp.join('data', 'ModelNet40'),
                        help='ModelNet root (raw/ and processed/ inside)')
    parser.add_argument('--name', default='40', choices=['10', '40'])
    parser.add_argument('--num-points', type=int, default=1000)
    parser.add_argument('--hidden', type=int, default=None,
                        help='width (default: 256, or 512 from 5000 points)')
    parser.add_argument('--epochs', type=int, default=1000)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--weight-decay', type=float, default=1e-7)
    parser.add_argument('--clip', type=float, default=5.0,
                        help='gradient-norm clip')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=osp.join('runs', 'modelnet'))
    parser.add_argument('--fresh', action='store_true',
                        help='ignore a checkpoint in --out')
    parser.add_argument('--workers', type=int, default=0,
                        help='processes that sample and batch point clouds')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads of torch (default: torch default)')
    parser.add_argument('--device', default=None,
                        help='cpu, cuda:0, ... (default: cuda:LOCAL_RANK '
                        'if available, else cpu)')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    hidden = args.hidden or (512 if args.num_points >= 5000 else 256)

    ctx = init_distributed(device=args.device)
    with main_process_first(ctx):
        train, test_clouds = load_datasets(args.root, args.name,
                                           args.num_points, args.seed)
    # As many full batches as the trainer's loader gives each process.
    steps_per_epoch = math.ceil(len(train) / ctx.world_size) \
        // args.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train)} training objects make no batch of "
                         f"--batch-size {args.batch_size}")
    milestones = sorted({
        round(f * args.epochs) * steps_per_epoch
        for f in (0.4, 0.8) if round(f * args.epochs) > 0
    })

    seed_everything(args.seed)
    model = DeepSetsPointCloud(3, train.num_classes, hidden_channels=hidden)

    def evaluate(model: torch.nn.Module) -> Dict[str, Any]:
        acc = accuracy(model, test_clouds, args.batch_size, ctx.device)
        if not args.no_progress:  # printed above the progress bar
            tqdm.write(f'epoch {trainer.step // steps_per_epoch}: test '
                       f'accuracy {100 * acc:.2f} %')
        return {'test_acc': acc}

    trainer = Trainer(
        model, loss_fn, train, steps=args.epochs * steps_per_epoch,
        batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, clip_grad_norm=args.clip,
        scheduler=lambda opt: torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones, gamma=0.1),
        evaluate=evaluate, eval_every=steps_per_epoch,
        log_every=steps_per_epoch, checkpoint_every=steps_per_epoch,
        out_dir=args.out, resume=not args.fresh, seed=args.seed, dist=ctx,
        progress=not args.no_progress, num_workers=args.workers,
        desc=f'ModelNet{args.name}', config={
            'name': args.name,
            'num_points': args.num_points,
            'hidden': hidden,
            'epochs': args.epochs,
        })
    summary = trainer.fit()

    results: Dict[str, Any] = {}
    if ctx.is_main:
        epochs = [{'epoch': e['step'] // steps_per_epoch,
                   'test_acc': e['test_acc']} for e in trainer.evals]
        plot = osp.join(args.out, 'learning_curve.png')
        os.makedirs(args.out, exist_ok=True)
        plot_learning_curve(trainer.history, trainer.evals, steps_per_epoch,
                            plot)
        results = {
            'test_acc': summary['eval']['test_acc'],
            'epochs': epochs,
            'checkpoint': trainer.checkpoint_path,
            'metrics': trainer.metrics_path,
            'plot': plot,
        }
        print(f'ModelNet{args.name}, {args.num_points} points: test accuracy '
              f'{100 * results["test_acc"]:.2f} % after '
              f'{trainer.step // steps_per_epoch} epochs; learning curve in '
              f'{plot}')
    trainer.close()
    close_distributed(ctx)
    return results


if __name__ == '__main__':
    main()
