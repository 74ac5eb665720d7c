"""Plots drawn from a robustness ``results.json`` alone (matplotlib, Agg).

``noise_drop.png``: accuracy drop vs noise frequency, one line per model (Park et al.
Fig. 8b / F.2 right). ``shape_bias.png``: per shape category the fraction of shape
decisions, one marker per model, a vertical line at each model's pooled shape bias
(Fig. 8a / F.2 left, after model-vs-human's shape-bias plot).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vitscope.reporting.plots import save_figure  # before pyplot: it chooses matplotlib's backend
from vitscope.results import ensure_dir

import matplotlib.pyplot as plt  # noqa: E402

MARKERS = "osD^v<>ph*"


def _label(entry: dict[str, Any]) -> str:
    return entry["spec"] + (f" + {Path(entry['probe']).name}" if entry.get("probe") else "")


def noise_drop_figure(results: dict[str, Any]) -> plt.Figure:
    """Accuracy drop (percentage points) against the band's centre frequency (units of π)."""
    meta = results["noise"]
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for i, entry in enumerate(e for e in results["models"] if "noise" in e):
        drop = [100 * d for d in entry["noise"]["drop"]]
        ax.plot(meta["frequencies"], drop, marker=MARKERS[i % len(MARKERS)], label=_label(entry))
    ax.axhline(0, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("Noise frequency (×π)")
    ax.set_ylabel("Accuracy drop (pp)")
    ax.set_title(f"Band noise: width {meta['band_width']}π, RMS {meta['strength']} ({meta['scale']})", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def shape_bias_figure(results: dict[str, Any]) -> plt.Figure:
    """Fraction of shape decisions per shape category (rows), one marker per model."""
    entries = [e for e in results["models"] if "shape_bias" in e]
    cats = sorted({c for e in entries for c in e["shape_bias"]["per_class"]})
    fig, ax = plt.subplots(figsize=(4.5, 0.32 * len(cats) + 1.5))
    for i, entry in enumerate(entries):
        sb = entry["shape_bias"]
        color = f"C{i}"
        xs = [sb["per_class"].get(c, {}).get("shape_bias") for c in cats]
        ys = [j for j, x in enumerate(xs) if x is not None and math.isfinite(x)]
        ax.scatter([xs[j] for j in ys], ys, marker=MARKERS[i % len(MARKERS)], color=color, label=_label(entry),
                   zorder=3, clip_on=False)
        if sb["shape_bias"] is not None and math.isfinite(sb["shape_bias"]):
            ax.axvline(sb["shape_bias"], color=color, lw=1)
    for j in range(len(cats) - 1):
        ax.axhline(j + 0.5, color="gray", lw=0.5, ls=":")
    ax.set_yticks(range(len(cats)), cats)
    ax.set_ylim(-0.5, len(cats) - 0.5)
    ax.set_xlim(0, 1)
    ax.invert_xaxis()  # texture-biased to the right, as in Geirhos et al.
    ax.set_xlabel("Fraction of 'shape' decisions")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 1.0 / max(len(cats), 1)))
    return fig


FIGURES = {"noise_drop": noise_drop_figure, "shape_bias": shape_bias_figure}


def figure_names(results: dict[str, Any]) -> list[str]:
    """The figures of :data:`FIGURES` the results support."""
    names = ["noise_drop"] if "noise" in results else []
    return names + (["shape_bias"] if any("shape_bias" in e for e in results["models"]) else [])


def plot_all(results: dict[str, Any], out: Path) -> list[Path]:
    """Every plot the results support, written into ``out``."""
    ensure_dir(out)
    return [save_figure(FIGURES[name](results), out / f"{name}.png") for name in figure_names(results)]
