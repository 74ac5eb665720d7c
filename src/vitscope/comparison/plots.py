"""Heatmaps of CKA matrices (Shekhar et al. Fig. 1, 2, 5, 6), drawn from saved numbers only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vitscope.reporting.plots import save_figure  # before pyplot: it chooses matplotlib's backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

TITLES = {
    "block": "Transformer blocks",
    "qkv": "MHSA-QKV",
    "ln1": "LayerNorm-1",
    "fc1": "MLP-FC-1",
    "attn_out": "Attention output",
}


def cka_figure(matrices: dict[str, list[list[float | None]]], label_a: str, label_b: str,
               title: str = "") -> plt.Figure:
    """One heatmap per layer type, side by side: rows = blocks of model A, columns = blocks of model B.

    Blocks are labelled from 1, as in the findings tables; colour scale fixed to [0, 1]; undefined
    entries (``None``) are left blank.
    """
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n + 0.8, 3.6), squeeze=False, layout="constrained", dpi=120)
    image = None
    for ax, (kind, m) in zip(axes[0], matrices.items()):
        arr = np.array([[np.nan if v is None else v for v in row] for row in m], dtype=float)
        image = ax.imshow(arr, origin="lower", vmin=0.0, vmax=1.0, cmap="magma", interpolation="nearest")
        ax.set_title(TITLES.get(kind, kind))
        ax.set_xlabel(f"{label_b} block")
        ax.set_ylabel(f"{label_a} block")
        for axis, size in ((ax.yaxis, arr.shape[0]), (ax.xaxis, arr.shape[1])):
            ticks = list(range(size))[:: max(1, size // 6)]
            axis.set_ticks(ticks, labels=[str(i + 1) for i in ticks])  # blocks 1-based, as in every table
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.85, label="CKA")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def comparison_figure(results: dict[str, Any], layer_types: Sequence[str] | None = None) -> plt.Figure:
    """The heatmaps of a compare ``results.json`` (all its layer types, or ``layer_types``), titled
    with the paper figures they match, the models, the image count and the token reduction."""
    specs = [m["spec"] for m in results["models"]]
    two = len(specs) == 2
    label_a, label_b = ("A", "B") if two else ("model", "model")
    title = "Minibatch CKA of every layer pair (Shekhar et al. Figs. 1, 2, 5, 6)\n"
    title += f"{label_a}: {specs[0]}" + (f"   {label_b}: {specs[1]}" if two else "")
    title += f"   ({results['data']['images']} images, {results['token_reduction']})"
    cka = results["cka"]
    return cka_figure({t: cka[t] for t in (layer_types or cka)}, label_a, label_b, title)


def plot_compare(results: dict[str, Any], out: Path) -> list[Path]:
    """``cka_<layer type>.png`` for each layer type and ``cka_all.png`` into ``out``."""
    paths = [save_figure(comparison_figure(results, [t]), out / f"cka_{t}.png", dpi=120) for t in results["cka"]]
    return [*paths, save_figure(comparison_figure(results), out / "cka_all.png", dpi=120)]
