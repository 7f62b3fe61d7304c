r"""The point-cloud classifier of the `"Deep Sets"
<https://arxiv.org/abs/1703.06114>`_ paper on ModelNet10 (``--name 40``
for the paper's ModelNet40).

Each object's mesh is centred and scaled into the unit ball
(:class:`~torch_geometric.transforms.NormalizeScale`, once, as a
pre-transform, in place of the authors' per-object standardisation),
augmented as in the paper (rotation about :math:`z` by an angle in
:math:`\pm 0.1\pi`, per-axis scaling by factors in
:math:`\mathcal{U}(0.8, 1.25)`), sampled to a point cloud and turned into an
edgeless set (:class:`~torch_geometric_deepsets.ToSet`). Training points are
sampled afresh every epoch; the test clouds are sampled once, so every
epoch's test accuracy is measured on the same points. The model is
:class:`~torch_geometric_deepsets.DeepSetsPointCloud`, trained like the
authors' code: Adam (lr :math:`10^{-3}`, weight decay :math:`10^{-7}`),
batches of 64, gradient norm clipped at 5, the learning rate divided by 10
at 40 % and 80 % of training (epochs 400 and 800 of 1000).

Lightning runs the loop (:class:`SetTask`): a progress bar, one
line per epoch with the test accuracy, checkpoints in ``--out/checkpoints``
(``--ckpt-path last`` resumes or extends a run), CSV logs, and this script
adds ``learning_curve.png`` after every run.

Usage (PyG downloads ModelNet, ~0.5 GB for ModelNet40, into ``--root`` if
it is not there and the download is reachable; offline, put the extracted
class folders into ``--root/raw/``, or try the example on generated shapes
with ``--synthetic``)::

    python examples/modelnet.py                      # ModelNet10
    python examples/modelnet.py --name 40 --num-points 1000
    python examples/modelnet.py --name 40 --num-points 5000 --num-workers 8
    python examples/modelnet.py --devices 4 --strategy ddp   # 4 GPUs
    python examples/modelnet.py --synthetic --max-epochs 5   # no data

The paper reports 82 / 87 / 90 % test accuracy on ModelNet40 with
100 / 1000 / 5000 points after 1000 epochs.
"""
import argparse
import os.path as osp
import socket
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlparse

import set_task
import torch
from report import save_plot, write_results

import torch_geometric.transforms as T
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.datasets import ModelNet
from torch_geometric_deepsets import DeepSetsPointCloud, RandomAxisScale, ToSet
from torch_geometric_deepsets.lightning import (
    SetTask,
    one_process_at_a_time,
    predict,
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


def missing_data(root: str) -> Optional[str]:
    r"""The first ModelNet class folder that PyG's :class:`ModelNet` looks
    for (in :obj:`root/raw`, for ModelNet10 and ModelNet40 alike) and does
    not find, or :obj:`None`."""
    for folder in ('bathtub', 'bed', 'chair', 'desk', 'dresser', 'monitor',
                   'night_stand', 'sofa', 'table', 'toilet'):
        if not osp.isdir(osp.join(root, 'raw', folder)):
            return osp.join(root, 'raw', folder)
    return None


def reachable(url: str, timeout: float = 5.0) -> bool:
    r"""Whether the host of :obj:`url` accepts a connection."""
    address = urlparse(url)
    try:
        socket.create_connection((address.hostname, address.port or 80),
                                 timeout=timeout).close()
    except OSError:
        return False
    return True


def offline_error(root: str, name: str) -> str:
    raw = osp.join(root, 'raw')
    return (f'ModelNet{name} is not in {raw} and its download '
            f'({ModelNet.urls[name]}) cannot be reached. Download and unzip '
            f'it elsewhere, then move the class folders inside '
            f'ModelNet{name}/ into {raw}/, so that '
            f'{osp.join(raw, "bathtub", "train")}/ holds .off files (or '
            f'point --root at the folder above raw/); to try the example '
            f'without the data, pass --synthetic.')


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
        test_clouds: List[Data] = [test[i] for i in range(len(test))]
    return train, test_clouds


class SyntheticShapes(InMemoryDataset):
    r"""Meshes of :obj:`num_classes` box shapes, one aspect ratio per class
    with its sides jittered by up to 10 % per object, centred and scaled
    into the unit ball: a stand-in for ModelNet that needs no download, for
    trying the script. The transforms sample the points, as for ModelNet.
    """
    def __init__(self, num_classes: int, per_class: int, seed: int,
                 transform: Optional[Any] = None) -> None:
        super().__init__(None, transform, log=False)
        gen = torch.Generator().manual_seed(seed)
        corners = torch.tensor([[x, y, z] for x in (0., 1.) for y in (0., 1.)
                                for z in (0., 1.)])
        face = torch.tensor([[0, 2, 3], [0, 3, 1], [4, 5, 7], [4, 7, 6],
                             [0, 1, 5], [0, 5, 4], [2, 6, 7], [2, 7, 3],
                             [0, 4, 6], [0, 6, 2], [1, 3, 7], [1, 7, 5]]).t()
        normalize = T.NormalizeScale()
        meshes = []
        for k in range(num_classes):
            # Side ratios 1 : a : b that differ between the classes.
            sides = torch.tensor([1.0, 0.2 + 0.8 * ((3 * k) % 7) / 6,
                                  0.2 + 0.8 * (k % 3) / 2])
            for _ in range(per_class):
                jitter = 1 + 0.1 * (2 * torch.rand(3, generator=gen) - 1)
                meshes.append(normalize(Data(
                    pos=corners * sides * jitter, face=face.clone(),
                    y=torch.tensor([k]))))
        self.data, self.slices = self.collate(meshes)


def synthetic_datasets(num_classes: int, per_class: int, num_points: int,
                       seed: int) -> Tuple[SyntheticShapes, List[Data]]:
    r""":func:`load_datasets` on :class:`SyntheticShapes`: training meshes
    (augmented and re-sampled on every access) and test clouds sampled once,
    with :obj:`per_class` objects of every class in each split."""
    train = SyntheticShapes(num_classes, per_class, seed,
                            transform=train_transform(num_points))
    test = SyntheticShapes(num_classes, per_class, seed + 1,
                           transform=test_transform(num_points))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        test_clouds: List[Data] = [test[i] for i in range(len(test))]
    return train, test_clouds


def plot_learning_curve(history: List[Dict[str, Any]], path: str) -> None:
    r"""Training loss and test accuracy per epoch, with markers, so that a
    single epoch already shows."""
    epochs = [h for h in history if 'train_loss_epoch' in h]

    def draw(ax_loss: Any) -> None:
        x = [h['epoch'] + 1 for h in epochs]
        ax_loss.plot(x, [h['train_loss_epoch'] for h in epochs], 'o-',
                     color='tab:blue')
        ax_loss.set_xlabel('epoch')
        ax_loss.set_ylabel('training loss', color='tab:blue')
        ax_acc = ax_loss.twinx()
        ax_acc.plot(x, [100 * h.get('val_acc', float('nan')) for h in epochs],
                    's-', color='tab:orange')
        ax_acc.set_ylabel('test accuracy (%)', color='tab:orange')
        ax_loss.set_title('Deep Sets on ModelNet')
        if len(x) == 1:
            ax_loss.set_xticks(x)

    save_plot(path, draw)


def main(argv: Optional[Sequence[str]] = None) -> set_task.Outcome:
    parser = argparse.ArgumentParser(
        prog=osp.basename(__file__),  # also when imported and run by a test
        description='Deep Sets point-cloud classifier on ModelNet')
    set_task.add_arguments(parser, 'modelnet', max_epochs=1000,
                           batch_size=64, lr=1e-3)
    parser.set_defaults(gradient_clip_val=5.0)
    group = parser.add_argument_group('modelnet')
    group.add_argument('--name', default='10', choices=['10', '40'],
                       help='ModelNet10 or ModelNet40 (default: 10)')
    group.add_argument('--root', default=None,
                       help='ModelNet root, raw/ and processed/ inside '
                       '(default: data/ModelNet{name})')
    group.add_argument('--num-points', type=set_task.positive_int,
                       default=1000, help='points per cloud (default: 1000)')
    group.add_argument('--hidden', type=set_task.positive_int, default=None,
                       help='width (default: 256, or 512 from 5000 points)')
    group.add_argument('--weight-decay', type=set_task.non_negative_float,
                       default=1e-7, help='Adam weight decay (default: 1e-7)')
    group.add_argument('--synthetic', type=set_task.positive_int, nargs='?',
                       const=64, default=None, metavar='PER_CLASS',
                       help='no ModelNet: generated box shapes of 4 '
                       'classes, this many per class and split (default: '
                       '64), to try the script offline')
    args = parser.parse_args(argv)
    root = args.root or osp.join(args.data_root, f'ModelNet{args.name}')
    hidden = args.hidden or (512 if args.num_points >= 5000 else 256)
    # Before PyG's ModelNet, which would create folders and a lock, then
    # fail on the download after a long traceback.
    if args.synthetic is None and missing_data(root) and \
            not reachable(ModelNet.urls[args.name]):
        parser.error(offline_error(root, args.name))

    set_task.seed_everything(args)
    if args.synthetic is not None:
        train, test_clouds = synthetic_datasets(4, args.synthetic,
                                                args.num_points, args.seed)
    else:
        with one_process_at_a_time(root):
            train, test_clouds = load_datasets(root, args.name,
                                               args.num_points, args.seed)
    data = set_task.data_module(args, parser, train, test_clouds)
    widths = dict(in_channels=3, num_classes=train.num_classes,
                  hidden_channels=hidden)
    task = SetTask(DeepSetsPointCloud, widths,
                   task='classification', lr=args.lr,
                   weight_decay=args.weight_decay,
                   schedule='multistep', milestones=(0.4, 0.8))
    model = task.model
    trainer = set_task.build_trainer(args, parser, monitor='val_acc',
                                     mode='max')
    set_task.fit(trainer, task, data, args)
    if not trainer.is_global_zero:
        return set_task.Outcome({}, {'model': model})

    history = set_task.history(trainer)
    evals = [h for h in history if 'val_acc' in h]
    if evals and evals[-1]['step'] == trainer.global_step:
        test_acc = evals[-1]['val_acc']
    else:  # --max-steps ended the run between two evaluations
        pred, batches = predict(task, test_clouds)
        labels = torch.cat([b.y for b in batches])
        test_acc = float((pred.argmax(-1) == labels).float().mean())
    plot = osp.join(args.out, 'learning_curve.png')
    plot_learning_curve(history, plot)
    name = 'synthetic' if args.synthetic is not None else \
        f'ModelNet{args.name}'
    results = {
        'name': args.name,
        'dataset': name,
        'num_points': args.num_points,
        'test_acc': test_acc,
        'epochs': [{'epoch': h['epoch'] + 1, 'test_acc': h['val_acc']}
                   for h in evals],
        'checkpoint': osp.join(args.out, 'checkpoints', 'last.ckpt'),
        'plot': plot,
        'hparams': dict(task.hparams),
    }
    print(f'{name}, {args.num_points} points: test accuracy '
          f'{100 * results["test_acc"]:.2f} % after {trainer.current_epoch} '
          f'epochs; learning curve in {plot}; results in '
          f'{write_results(args.out, results)}')
    return set_task.Outcome(results, {'model': model})


if __name__ == '__main__':
    main()
