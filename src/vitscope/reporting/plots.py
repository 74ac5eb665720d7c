"""Depth plots of analysis results, one figure per metric, several models overlaid.

Each ``*_figure`` function takes ``runs``: a list of ``(label, metrics)`` where ``metrics`` is the
``"metrics"`` mapping of a ``results.json``, so figures are regenerated from files alone; it
returns the matplotlib ``Figure`` and :func:`plot_all` writes them as PNGs.

Matplotlib draws off screen (Agg) unless ``MPLBACKEND`` names a backend, as a Jupyter kernel
does (``ipykernel`` sets it to the inline backend), so figures returned to a notebook show there.
"""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

if not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vitscope.results import ensure_dir, write_atomic  # noqa: E402

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


def detached(fig: plt.Figure) -> plt.Figure:
    """``fig`` let go by pyplot (closed), for a caller that keeps it: a notebook then shows it when it
    is displayed, not also at the end of the cell that drew it."""
    plt.close(fig)
    return fig


def png_figure(path: Path, dpi: int = 110) -> plt.Figure:
    """A figure showing the PNG at ``path`` at its own size (a figure read back from disk), detached."""
    pixels = plt.imread(path)
    fig = plt.figure(figsize=(pixels.shape[1] / dpi, pixels.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(pixels)
    ax.set_axis_off()
    return detached(fig)


def label_figure(fig: plt.Figure, paper: str, title: str, reading: str, by_hand: bool = False) -> int:
    """Title ``fig`` with the paper figure it corresponds to and a one-line reading of it.

    Both are wrapped to the figure's width; constrained layout then keeps them whole (a
    figure laid out ``by_hand`` gets the title at its top edge). Returns the number of lines.
    """
    width_chars = max(40, int(fig.get_figwidth() * 72 / (8.5 * 0.6)))
    text = textwrap.fill(f"{title} ({paper})", width_chars) + "\n" + textwrap.fill(f"Reading: {reading}", width_chars)
    where = {"y": 1 - 0.05 / fig.get_figheight(), "va": "top"} if by_hand else {}
    fig.suptitle(text, fontsize=8.5, linespacing=1.3, **where)
    return text.count("\n") + 1


def _panels(n: int) -> tuple[plt.Figure, np.ndarray]:
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.9), squeeze=False, layout="constrained")
    return fig, axes[0]


def _decoder_boundary(ax: plt.Axes, m: dict[str, Any], metric: str, at: float) -> None:
    """A dashed line between the encoder's blocks and the decoder's (Park et al. Fig. 10)."""
    if metric in m.get("decoder", {}):
        ax.axvline(at, color="grey", ls="--", lw=1)
        ax.text(at, 1.0, " decoder →", transform=ax.get_xaxis_transform(), fontsize=7, va="top", color="grey")


def _blocks(m: dict[str, Any], metric: str, key: str) -> list[Any]:
    """Per-depth values of the encoder, followed by the decoder's when the results have one (for
    spectrum and Fourier the decoder's index 0 is its input, after ``decoder_embed``)."""
    return list(m[metric][key]) + list(m.get("decoder", {}).get(metric, {}).get(key, []))


def attention_figure(runs: Runs) -> plt.Figure:
    """Attention distance (px), NMI (mean ± std over heads, heads as dots), entropy vs depth (Figs. 3, 4, E.1).

    Axes span their natural ranges: distance 0 to the largest patch distance of the grid, NMI 0 to 1,
    entropy 0 to log P (uniform attention), so a random model's noise is not drawn as a pattern.
    """
    fig, (ax_d, ax_n, ax_e) = _panels(3)
    tops: dict[str, list[float]] = {"distance": [], "entropy": []}
    for i, (label, m) in enumerate(runs):
        a = m["attention"]
        c = f"C{i}"
        for ax, key in ((ax_d, "distance"), (ax_n, "nmi"), (ax_e, "entropy")):
            per_head = _blocks(m, "attention", f"{key}_per_head")
            depth = np.arange(1, len(per_head) + 1)
            ax.plot(depth, [np.mean(h) for h in per_head], "-o", color=c, label=label, ms=3)
            xs = np.concatenate([np.full(len(h), d) for d, h in zip(depth, per_head)])
            ax.scatter(xs, np.concatenate([np.asarray(h, dtype=float) for h in per_head]), color=c, s=5, alpha=0.35)
            _decoder_boundary(ax, m, "attention", len(a[f"{key}_per_head"]) + 0.5)
        std = np.asarray(_blocks(m, "attention", "nmi_std_over_heads"), dtype=float)
        mean = np.asarray(_blocks(m, "attention", "nmi"), dtype=float)
        ax_n.fill_between(np.arange(1, len(mean) + 1), mean - std, mean + std, color=c, alpha=0.12)
        for key in tops:
            if a.get(f"max_{key}") is not None:
                tops[key].append(float(a[f"max_{key}"]))
    for ax, title in ((ax_d, "attention distance (px)"), (ax_n, "normalized mutual information"),
                      (ax_e, "attention entropy (nats)")):
        ax.set(xlabel="depth (block 1…L)", title=title)
        ax.set_ylim(bottom=0)
    ax_n.set_ylim(0, 1)
    if tops["distance"]:
        ax_d.set_ylim(0, max(tops["distance"]))
        ax_d.set_ylabel("0 … largest patch distance of the grid", fontsize=7)
    if tops["entropy"]:
        ax_e.set_ylim(0, max(tops["entropy"]) * 1.02)
        ax_e.axhline(max(tops["entropy"]), color="grey", lw=0.8, ls=":")
        ax_e.set_ylabel("0 … log P (dotted: uniform)", fontsize=7)
    ax_d.legend(fontsize=8)
    label_figure(fig, "Park et al. Figs. 3, 4, E.1; with a decoder Fig. 10a", "Self-attention through depth",
                 "high distance = global attention (CL-like), low = local (MIM-like); NMI near 0 = attention that "
                 "ignores the query (collapsed or uniform), high = query-specific. Random weights give the uniform "
                 "baseline: distance = mean patch distance, NMI ≈ 0, entropy = log P.")
    return fig


def similarity_figure(runs: Runs) -> plt.Figure:
    """Cosine similarity between heads, before/after attention, and tokens vs depth (Fig. 5)."""
    fig, axes = _panels(3)
    low = 0.0
    for i, (label, m) in enumerate(runs):
        for ax, key in zip(axes, ("heads_cosine", "depth_cosine", "tokens_cosine")):
            y = np.asarray(_blocks(m, "similarity", key), dtype=float)
            ax.plot(np.arange(1, len(y) + 1), y, "-o", color=f"C{i}", label=label, ms=3)
            low = min(low, float(np.nanmin(y)) if len(y) else 0.0)
            _decoder_boundary(ax, m, "similarity", len(m["similarity"][key]) + 0.5)
    for ax, title in zip(axes, ("heads", "before vs after attention", "tokens")):
        ax.set(xlabel="depth (block 1…L)", ylabel="cosine similarity", title=title, ylim=(low, 1))
    axes[0].legend(fontsize=8)
    label_figure(fig, "Park et al. Fig. 5", "Representational similarity in self-attention",
                 "high cosine between heads and between tokens = homogeneous attention (CL-like); high cosine "
                 "before vs after attention = the attention changes the tokens little.")
    return fig


def _depth_colorbar(ax: plt.Axes, depths: int) -> None:
    """Colour scale for curves drawn one per depth (0 = embedding)."""
    sm = plt.cm.ScalarMappable(cmap=plt.cm.viridis, norm=matplotlib.colors.Normalize(0, depths - 1))
    ax.figure.colorbar(sm, ax=ax, label="depth (0 = embedding)")


def _per_depth(ax: plt.Axes, x: np.ndarray | None, curves: np.ndarray) -> None:
    for d, y in enumerate(curves):
        xs = np.arange(1, len(y) + 1) if x is None else x
        ax.plot(xs, y, color=plt.cm.viridis(d / max(1, len(curves) - 1)), lw=1)
    _depth_colorbar(ax, len(curves))


def _spectra(ax: plt.Axes, curves: np.ndarray, raw: np.ndarray, title: str) -> None:
    """Δ log singular values per depth; values the metric could not define (log clamped at
    log 1e-300, beyond the rank of the sample) are left out, not drawn as a cliff."""
    curves = np.where(np.asarray(raw, dtype=float) > np.log(1e-300) + 1, curves, np.nan)
    _per_depth(ax, None, curves)
    ax.set(xlabel="singular value index", ylabel="Δ log singular value", title=title, xscale="log")


def spectrum_figure(runs: Runs) -> plt.Figure:
    """Token and image singular value spectra per depth, and the 2nd-largest value vs depth (Figs. 7, E.3)."""
    fig, axes = plt.subplots(len(runs), 3, figsize=(12.6, 3.4 * len(runs) + 0.6), squeeze=False,
                             layout="constrained")
    for row, (label, m) in zip(axes, runs):
        s = m["spectrum"]
        _spectra(row[0], np.asarray(s["token_delta_log_sv"]), np.asarray(s["token_log_sv"]),
                 f"{label}: tokens of one image")
        if s["image_delta_log_sv"]:
            _spectra(row[1], np.asarray(s["image_delta_log_sv"]), np.asarray(s["image_log_sv"]),
                     f"{label}: images (GAP)")
        for key, name in (("token_log_sv", "tokens"), ("image_log_sv", "images")):
            svs = _blocks(m, "spectrum", key)  # per depth; the decoder's are of its own width
            second = [sv[1] if len(sv) > 1 else np.nan for sv in svs]
            if not np.all(np.isnan(second)):
                row[2].plot(np.arange(len(svs)), second, "-o", ms=3, label=name)
        _decoder_boundary(row[2], m, "spectrum", len(s["token_log_sv"]) - 0.5)
        row[2].set(xlabel="depth (0 = embedding)", ylabel="log 2nd-largest singular value", title=label)
        row[2].legend(fontsize=8)
    label_figure(fig, "Park et al. Figs. 7, E.3; with a decoder Fig. 10", "Singular value spectra of tokens",
                 "a flat token spectrum (Δ log singular value near 0) = the tokens of an image spread over many "
                 "directions (MIM-like); a steep one = an image's tokens alike (CL-like).")
    return fig


def fourier_figure(runs: Runs) -> plt.Figure:
    """ΔLog amplitude along frequency per depth, and at the highest frequency vs depth (Fig. 9)."""
    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(4.2 * (len(runs) + 1), 3.9), squeeze=False,
                             layout="constrained")
    axes = axes[0]
    for i, (label, m) in enumerate(runs):
        f = m["fourier"]
        rel = np.asarray(f["delta_log_amplitude"])
        freqs = np.asarray(f["freqs_over_pi"])
        _per_depth(axes[i], freqs, rel)
        axes[i].set(xlabel="frequency (×π)", ylabel="Δ log amplitude", title=label)
        top = f["highest_freq_over_pi"]
        y = _blocks(m, "fourier", "delta_log_amplitude_at_highest")  # decoder: its input, then its blocks
        axes[-1].plot(np.arange(len(y)), y, "-o", ms=3, color=f"C{i}", label=label)
        _decoder_boundary(axes[-1], m, "fourier", len(rel) - 0.5)
    axes[-1].set(xlabel="depth (0 = embedding)", ylabel=f"Δ log amplitude at {top:.3g}π",
                 title="high-frequency amplitude")
    axes[-1].legend(fontsize=8)
    label_figure(fig, "Park et al. Fig. 9; with a decoder Fig. 10b", "Fourier analysis of feature maps",
                 "higher Δ log amplitude at the highest frequency = more high-frequency (local, texture) content, "
                 "MIM-like; CL's later layers lower it.")
    return fig


def _floats(section: dict[str, Any], key: str) -> np.ndarray:
    """A per-block list of a results section as floats, ``None`` (undefined) as NaN."""
    return np.asarray([np.nan if v is None else v for v in section[key]], dtype=float)


def norms_figure(runs: Runs) -> plt.Figure:
    """Patch-token norms vs depth (median solid, 99th percentile dashed), the outlier fraction, the
    outliers' neighbour cosine against the others', and the last block's norm histogram (Darcet et al.
    Figs. 3, 4a)."""
    fig, (ax_n, ax_o, ax_c, ax_h) = _panels(4)
    for i, (label, m) in enumerate(runs):
        n, c = m["norms"], f"C{i}"
        depth = np.arange(1, len(n["median"]) + 1)
        ax_n.plot(depth, _floats(n, "median"), "-o", ms=3, color=c, label=label)
        ax_n.plot(depth, _floats(n, "p99"), "--", color=c, lw=1)
        ax_o.plot(depth, 100 * _floats(n, "outlier_fraction"), "-o", ms=3, color=c, label=label)
        ax_c.plot(depth, _floats(n, "neighbour_cosine_others"), "-o", ms=3, color=c, label=f"{label}: others")
        ax_c.plot(depth, _floats(n, "neighbour_cosine_outliers"), "^", ms=6, color=c, label=f"{label}: outliers")
        lo, hi = n["log10_range"]
        counts = np.asarray(n["log10_histogram"][-1], dtype=float)
        edges = np.linspace(lo, hi, len(counts) + 1)
        used = np.nonzero(counts)[0]
        if len(used):
            keep = slice(max(used[0] - 5, 0), min(used[-1] + 6, len(counts)))
            ax_h.stairs(counts[keep] / counts.sum(), 10 ** edges[keep.start:keep.stop + 1], color=c, label=label)
    ax_n.set(xlabel="depth (block 1…L)", ylabel="ℓ2 norm of patch tokens", yscale="log",
             title="median (solid), 99th percentile (dashed)")
    ax_o.set(xlabel="depth (block 1…L)", ylabel="% of patch tokens", title="outlier tokens", ylim=(0, None))
    ax_c.set(xlabel="depth (block 1…L)", ylabel="mean cosine to 4-neighbours at the input",
             title="where outliers sit", ylim=(-1, 1))
    ax_h.set(xscale="log", xlabel="ℓ2 norm (last block)", ylabel="fraction of patch tokens", yscale="log",
             title="norm histogram, last block")
    ax_n.legend(fontsize=8)
    ax_c.legend(fontsize=7)
    label_figure(fig, "Darcet et al. Figs. 3, 4a", "Patch-token norms (where a ViT stores globals)",
                 f"a second mode of high-norm tokens (outliers: {runs[0][1]['norms']['outlier_rule']}) = patches "
                 "repurposed as global scratch space, seen in large long-trained ViTs (DINOv2, CLIP, DeiT-III), "
                 "not in DINO or MAE; outliers with a higher neighbour cosine sit on redundant, low-information "
                 "patches.")
    return fig


FIGURES: dict[str, Callable[[Runs], plt.Figure]] = {
    "attention": attention_figure, "similarity": similarity_figure,
    "spectrum": spectrum_figure, "fourier": fourier_figure, "norms": norms_figure,
}


def common_metrics(runs: Runs) -> list[str]:
    """The metrics of :data:`FIGURES` present in every run, in figure order."""
    common = set.intersection(*(set(m) for _, m in runs)) if runs else set()
    return [name for name in FIGURES if name in common]


def plot_all(runs: Runs, out_dir: Path) -> list[Path]:
    """One PNG per metric present in every run."""
    ensure_dir(out_dir)
    return [save_figure(FIGURES[name](runs), out_dir / f"{name}.png") for name in common_metrics(runs)]
