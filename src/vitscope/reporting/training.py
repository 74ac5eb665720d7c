"""Training curves of ``vitscope pretrain`` runs, read from their ``log.jsonl`` (no model touched).

Not a paper figure: the loss of each run against epochs, one panel per run because the
objectives' losses have different scales (MoCo v3's 2τ·InfoNCE starts near 2τ·log(2B),
SimMIM's masked L1 and MAE's normalised MSE near 1); the hybrid also shows its two parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vitscope.reporting.plots import save_figure  # noqa: E402

PARTS = {"loss_cl": "contrastive part", "loss_mim": "masked-image part"}


def training_figure(runs: Sequence[tuple[str, list[dict[str, Any]]]]) -> Figure:
    """Loss vs epoch, one panel per ``(label, log records)``; loss parts dashed where logged."""
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False, layout="constrained")
    for ax, (label, recs) in zip(axes[0], runs):
        epoch = [r["epoch"] for r in recs]
        ax.plot(epoch, [r["loss"] for r in recs], color="C0", label="loss")
        for i, (key, name) in enumerate(PARTS.items()):
            if key in recs[0]:
                ax.plot(epoch, [r[key] for r in recs], "--", color=f"C{i + 1}", lw=1, label=name)
        ax.set(xlabel="epoch", ylabel="training loss", title=label, xlim=(0, max(epoch)))
        if len(ax.get_lines()) > 1:
            ax.legend(fontsize=8)
    fig.suptitle("pretraining loss (training curves, not a paper figure)", fontsize=10)
    return fig


def plot_training_curves(runs: Sequence[tuple[str, list[dict[str, Any]]]], path: Path) -> Path:
    """:func:`training_figure` saved as the PNG ``path``."""
    return save_figure(training_figure(runs), path)
