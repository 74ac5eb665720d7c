"""Heatmaps of CKA matrices (Shekhar et al. Fig. 1, 2, 5, 6), drawn from saved numbers only."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vitscope.report.plots import save_figure  # noqa: E402

TITLES = {
    "block": "Transformer blocks",
    "qkv": "MHSA-QKV",
    "ln1": "LayerNorm-1",
    "fc1": "MLP-FC-1",
    "attn_out": "Attention output",
}


def plot_cka(matrices: dict[str, list[list[float | None]]], label_a: str, label_b: str, path: Path,
             title: str = "") -> None:
    """One heatmap per layer type, side by side: rows = layers of model A, columns = layers of model B.

    Colour scale fixed to [0, 1]; undefined entries (``None``) are left blank.
    """
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n + 0.8, 3.6), squeeze=False, layout="constrained")
    image = None
    for ax, (kind, m) in zip(axes[0], matrices.items()):
        arr = np.array([[np.nan if v is None else v for v in row] for row in m], dtype=float)
        image = ax.imshow(arr, origin="lower", vmin=0.0, vmax=1.0, cmap="magma", interpolation="nearest")
        ax.set_title(TITLES.get(kind, kind))
        ax.set_xlabel(f"{label_b} layer")
        ax.set_ylabel(f"{label_a} layer")
        ticks_y, ticks_x = range(arr.shape[0]), range(arr.shape[1])
        ax.set_yticks(list(ticks_y)[:: max(1, arr.shape[0] // 6)])
        ax.set_xticks(list(ticks_x)[:: max(1, arr.shape[1] // 6)])
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.85, label="CKA")
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path, dpi=120)
