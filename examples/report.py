r"""Tables and plots of the example scripts' results."""
import json
import os
import os.path as osp
from typing import Any, Callable, Dict, List, Optional, Sequence

from torch import Tensor


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


def write_results(out: str, results: Dict[str, Any]) -> str:
    r"""Writes :obj:`results` as :obj:`out/results.json`; returns the
    path."""
    os.makedirs(out, exist_ok=True)
    path = osp.join(out, 'results.json')
    with open(path, 'w') as f:
        json.dump(results, f, indent=2)
        f.write('\n')
    return path
