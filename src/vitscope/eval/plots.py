"""Per-block accuracy plots of evaluation results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def plot_per_block(curves: Mapping[str, Sequence[float]], path: Path, title: str,
                   reference: Mapping[str, float] | None = None) -> None:
    """Accuracy (%) against block index (1-based), one line per feature type; PNG, atomic.

    ``reference`` draws horizontal dashed lines (e.g. the linear probe on the final features).
    """
    import matplotlib.pyplot as plt

    from vitscope.report.plots import save_figure

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for name, acc in curves.items():
        blocks = np.arange(1, len(acc) + 1)
        ax.plot(blocks, 100 * np.asarray(acc, dtype=float), marker="o", ms=3, label=name)
    for name, acc in (reference or {}).items():
        ax.axhline(100 * acc, ls="--", lw=1, color="grey", label=name)
    ax.set_xlabel("block")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path, dpi=120)
