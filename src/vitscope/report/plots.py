"""Depth plots of analysis results, one PNG per metric, several models overlaid.

Each function takes ``runs``: a list of ``(label, metrics)`` where ``metrics`` is the
``"metrics"`` mapping of a ``results.json``, so figures are regenerated from files alone.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vitscope.results import write_atomic  # noqa: E402

Runs = Sequence[tuple[str, dict[str, Any]]]


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 110, tight: bool = True) -> Path:
    """Lay out (``tight``: tight layout unless the figure has a layout engine), write ``fig`` as
    PNG atomically, close it; return the path."""
    path = Path(path)
    if tight and fig.get_layout_engine() is None:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return path


def label_figure(fig: plt.Figure, paper: str, title: str, reading: str) -> int:
    """Title ``fig`` with the paper figure it corresponds to and a one-line reading of it.

    Both are wrapped to the figure's width so that constrained layout keeps them whole;
    returns the number of text lines (for figures laid out by hand).
    """
    width_chars = max(40, int(fig.get_figwidth() * 72 / (8.5 * 0.6)))
    text = textwrap.fill(f"{title} ({paper})", width_chars) + "\n" + textwrap.fill(f"Reading: {reading}", width_chars)
    fig.suptitle(text, fontsize=8.5, linespacing=1.3, y=1 - 0.05 / fig.get_figheight(), va="top")
    return text.count("\n") + 1


def _panels(n: int) -> tuple[plt.Figure, np.ndarray]:
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    return fig, axes[0]


def plot_attention(runs: Runs, path: Path) -> Path:
    """Attention distance (px), NMI (mean ± std over heads, heads as dots), entropy vs depth (Figs. 3, 4, E.1)."""
    fig, (ax_d, ax_n, ax_e) = _panels(3)
    for i, (label, m) in enumerate(runs):
        a = m["attention"]
        c = f"C{i}"
        for ax, key in ((ax_d, "distance"), (ax_n, "nmi"), (ax_e, "entropy")):
            per_head = np.asarray(a[f"{key}_per_head"])
            depth = np.arange(1, len(per_head) + 1)
            ax.plot(depth, per_head.mean(1), "-o", color=c, label=label, ms=3)
            ax.scatter(np.repeat(depth, per_head.shape[1]), per_head.ravel(), color=c, s=5, alpha=0.35)
        std = np.asarray(a["nmi_std_over_heads"])
        mean = np.asarray(a["nmi"])
        ax_n.fill_between(np.arange(1, len(mean) + 1), mean - std, mean + std, color=c, alpha=0.12)
    for ax, title in ((ax_d, "attention distance (px)"), (ax_n, "normalized mutual information"),
                      (ax_e, "attention entropy (nats)")):
        ax.set(xlabel="depth (block 1…L)", title=title)
    ax_d.legend(fontsize=8)
    return save_figure(fig, path)


def plot_similarity(runs: Runs, path: Path) -> Path:
    """Cosine similarity between heads, before/after attention, and tokens vs depth (Fig. 5)."""
    fig, axes = _panels(3)
    for i, (label, m) in enumerate(runs):
        s = m["similarity"]
        for ax, key in zip(axes, ("heads_cosine", "depth_cosine", "tokens_cosine")):
            y = np.asarray(s[key], dtype=float)
            ax.plot(np.arange(1, len(y) + 1), y, "-o", color=f"C{i}", label=label, ms=3)
    for ax, title in zip(axes, ("heads", "before vs after attention", "tokens")):
        ax.set(xlabel="depth (block 1…L)", ylabel="cosine similarity", title=title)
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)


def _depth_colorbar(ax: plt.Axes, depths: int) -> None:
    """Colour scale for curves drawn one per depth (0 = embedding)."""
    sm = plt.cm.ScalarMappable(cmap=plt.cm.viridis, norm=matplotlib.colors.Normalize(0, depths - 1))
    ax.figure.colorbar(sm, ax=ax, label="depth (0 = embedding)")


def _per_depth(ax: plt.Axes, x: np.ndarray | None, curves: np.ndarray) -> None:
    for d, y in enumerate(curves):
        xs = np.arange(1, len(y) + 1) if x is None else x
        ax.plot(xs, y, color=plt.cm.viridis(d / max(1, len(curves) - 1)), lw=1)
    _depth_colorbar(ax, len(curves))


def _spectra(ax: plt.Axes, curves: np.ndarray, title: str) -> None:
    _per_depth(ax, None, curves)
    ax.set(xlabel="singular value index", ylabel="Δ log singular value", title=title, xscale="log")


def plot_spectrum(runs: Runs, path: Path) -> Path:
    """Token and image singular value spectra per depth, and the 2nd-largest value vs depth (Figs. 7, E.3)."""
    fig, axes = plt.subplots(len(runs), 3, figsize=(12.6, 3.4 * len(runs)), squeeze=False)
    for row, (label, m) in zip(axes, runs):
        s = m["spectrum"]
        _spectra(row[0], np.asarray(s["token_delta_log_sv"]), f"{label}: tokens of one image")
        if s["image_delta_log_sv"]:
            _spectra(row[1], np.asarray(s["image_delta_log_sv"]), f"{label}: images (GAP)")
        for key, name in (("token_log_sv", "tokens"), ("image_log_sv", "images")):
            sv = np.asarray(s[key])
            if sv.ndim == 2 and sv.shape[1] > 1:
                row[2].plot(np.arange(len(sv)), sv[:, 1], "-o", ms=3, label=f"{name}")
        row[2].set(xlabel="depth (0 = embedding)", ylabel="log 2nd-largest singular value", title=label)
        row[2].legend(fontsize=8)
    return save_figure(fig, path)


def plot_fourier(runs: Runs, path: Path) -> Path:
    """ΔLog amplitude along frequency per depth, and at the highest frequency vs depth (Fig. 9)."""
    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(4.2 * (len(runs) + 1), 3.4), squeeze=False)
    axes = axes[0]
    for i, (label, m) in enumerate(runs):
        f = m["fourier"]
        rel = np.asarray(f["delta_log_amplitude"])
        freqs = np.asarray(f["freqs_over_pi"])
        _per_depth(axes[i], freqs, rel)
        axes[i].set(xlabel="frequency (×π)", ylabel="Δ log amplitude", title=label)
        top = f["highest_freq_over_pi"]
        axes[-1].plot(np.arange(len(rel)), rel[:, -1], "-o", ms=3, color=f"C{i}", label=label)
    axes[-1].set(xlabel="depth (0 = embedding)", ylabel=f"Δ log amplitude at {top:.3g}π",
                 title="high-frequency amplitude")
    axes[-1].legend(fontsize=8)
    return save_figure(fig, path)


PLOTS: dict[str, Callable[[Runs, Path], Path]] = {
    "attention": plot_attention, "similarity": plot_similarity,
    "spectrum": plot_spectrum, "fourier": plot_fourier,
}


def plot_all(runs: Runs, out_dir: Path) -> list[Path]:
    """One PNG per metric present in every run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    common = set.intersection(*(set(m) for _, m in runs)) if runs else set()
    return [fn(runs, out_dir / f"{name}.png") for name, fn in PLOTS.items() if name in common]
