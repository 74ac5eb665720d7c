"""Per-block accuracy plots of evaluation results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vitscope.eval.features import FINAL_FEATURE
from vitscope.reporting.plots import save_figure  # before pyplot: it chooses matplotlib's backend
from vitscope.results import probe_accuracies

import matplotlib.pyplot as plt  # noqa: E402

METHODS = ("knn", "linear")


def per_block_figure(curves: Mapping[str, Sequence[float]], title: str,
                     reference: Mapping[str, float] | None = None) -> plt.Figure:
    """Accuracy (%) against block index (1-based), one line per feature type.

    ``reference`` draws horizontal dashed lines (e.g. the linear probe on the final features).
    """
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for name, acc in curves.items():
        blocks = np.arange(1, len(acc) + 1)
        ax.plot(blocks, 100 * np.asarray(acc, dtype=float), marker="o", ms=3, label=name)
    for name, level in (reference or {}).items():
        ax.axhline(100 * level, ls="--", lw=1, color="grey", label=name)
    ax.set_xlabel("block")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_per_block(curves: Mapping[str, Sequence[float]], path: Path, title: str,
                   reference: Mapping[str, float] | None = None) -> Path:
    """:func:`per_block_figure` written as a PNG, atomically."""
    return save_figure(per_block_figure(curves, title, reference), path, dpi=120)


def probe_figure(results: dict[str, Any], method: str) -> plt.Figure:
    """Accuracy per block of a ``probe.json``'s ``method`` (knn or linear), one line per feature type,
    the probe on the final pooled features dashed."""
    acc = probe_accuracies(results)[method]
    curves = {k: v for k, v in acc.items() if k != FINAL_FEATURE}
    model = results["provenance"]["model"]
    title = f"{str(results['knn']['k']) + '-NN' if method == 'knn' else 'linear probe'} per block: {model}"
    label = f"{'k-NN' if method == 'knn' else 'linear probe'} on final pooled features"
    return per_block_figure(curves, title, reference={label: acc[FINAL_FEATURE][0]})


def probe_methods(results: dict[str, Any]) -> list[str]:
    """The methods of :data:`METHODS` a ``probe.json`` holds."""
    return [m for m in METHODS if m in results]


def plot_probe(results: dict[str, Any], out: Path) -> list[Path]:
    """``knn.png`` and / or ``linear.png`` of a ``probe.json`` into ``out``."""
    return [save_figure(probe_figure(results, m), out / f"{m}.png", dpi=120) for m in probe_methods(results)]


def finetune_figure(results: dict[str, Any]) -> plt.Figure:
    """Training loss and validation accuracy (%) per epoch of a ``finetune.json``."""
    history = results.get("history", [])
    epochs = [h["epoch"] for h in history]
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=120, layout="constrained")
    loss.plot(epochs, [h["train_loss"] for h in history], "-o", ms=3)
    acc.plot(epochs, [100 * h["val_accuracy"] for h in history], "-o", ms=3, color="C1")
    loss.set(xlabel="epoch", ylabel="training loss")
    acc.set(xlabel="epoch", ylabel="validation top-1 accuracy (%)")
    fig.suptitle(f"fine-tuning: {results.get('provenance', {}).get('model')}", fontsize=9)
    return fig
