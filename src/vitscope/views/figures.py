"""Figures of single images: query attention maps, token norm maps, token projections, t-SNE, per-head NMI KDE.

Each function draws arrays it is given (no model) and returns the figure; figures of image grids
are laid out by hand (a placeholder layout engine tells :func:`~vitscope.reporting.plots.save_figure`
to leave them as they are).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vitscope.reporting.plots import label_figure  # before pyplot: it chooses matplotlib's backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.layout_engine import PlaceHolderLayoutEngine  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from vitscope.views.pure import gaussian_kde_curve  # noqa: E402

MARKERS = "o^sDvP*Xph"


def _overlay(ax: plt.Axes, pixels: np.ndarray, heat: np.ndarray | None, query: tuple[int, int] | None,
             grid: tuple[int, int], vmax: float = 1.0) -> Any:
    """The image, optionally a heat map over it on the scale [0, vmax], the query patch boxed."""
    h, w = pixels.shape[:2]
    ax.imshow(pixels, extent=(0, w, h, 0))
    shown = None
    if heat is not None:
        shown = ax.imshow(heat, cmap="inferno", alpha=0.65, extent=(0, w, h, 0), interpolation="nearest",
                          vmin=0, vmax=vmax)
    if query is not None:
        ph, pw = h / grid[0], w / grid[1]
        ax.add_patch(Rectangle((query[1] * pw, query[0] * ph), pw, ph, fill=False, ec="cyan", lw=1.5))
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


PANEL, GAP, LEFT, BAR = 1.15, 0.12, 0.3, 0.95  # inches: image panel, gap, left margin, colour bar strip
LINE = 8.5 * 1.3 * 1.25 / 72  # inches per title line


def _image_grid(rows: int, cols: int, paper: str, title: str, reading: str
                ) -> tuple[plt.Figure, np.ndarray, plt.Axes]:
    """A figure of ``rows × cols`` square image panels laid out by hand (constrained layout is
    slow on dozens of axes), the title block on top and a colour-bar axis on the right."""
    width = LEFT + cols * (PANEL + GAP) + BAR
    fig = plt.figure(figsize=(width, 1.0))
    fig.set_layout_engine(PlaceHolderLayoutEngine(adjust_compatible=False, colorbar_gridspec=False))
    top = label_figure(fig, paper, title, reading, by_hand=True) * LINE + 0.2
    height = top + rows * (PANEL + GAP + 0.1) + 0.1
    fig.set_figheight(height)
    label_figure(fig, paper, title, reading, by_hand=True)  # again, placed for the final height
    axes = np.empty((rows, cols), dtype=object)
    for r in range(rows):
        for c in range(cols):
            x = LEFT + c * (PANEL + GAP)
            y = height - top - (r + 1) * (PANEL + GAP + 0.1) + GAP
            axes[r, c] = fig.add_axes((x / width, y / height, PANEL / width, PANEL / height))
    cax = fig.add_axes(((width - BAR + 0.1) / width, (height - top - rows * (PANEL + GAP + 0.1) + GAP) / height,
                        0.12 / width, (rows * (PANEL + GAP + 0.1) - GAP - 0.1) / height))
    return fig, axes, cax


def _scale_bar(fig: plt.Figure, cax: plt.Axes, shown: Any, patches: int) -> None:
    bar = fig.colorbar(shown, cax=cax)
    bar.set_label("attention weight", fontsize=7)
    bar.ax.axhline(1 / patches, color="cyan", lw=1.5)  # uniform attention
    bar.ax.tick_params(labelsize=6)


def attention_maps_figure(pixels: np.ndarray, maps: np.ndarray, queries: Sequence[tuple[int, int]],
                          name: str) -> plt.Figure:
    """Rows: query patches; columns: the image, then the head-mean map of block 1…L.

    ``maps``: ``[Q, L, h, w]``; one colour scale, 0 to the largest weight, for all maps.
    """
    nq, depth = maps.shape[:2]
    grid = maps.shape[2:]
    fig, axes, cax = _image_grid(
        nq, depth + 1, "Park et al. Fig. 2", "Attention of query patches through depth, mean over heads",
        "maps that follow the query are local (MIM-like); maps alike for both queries are collapsed "
        "(CL-like); a flat map at the cyan tick of the scale is uniform attention. One scale for all maps; "
        "query boxed in cyan.")
    vmax = float(maps.max())
    for r, q in enumerate(queries):
        _overlay(axes[r, 0], pixels, None, q, grid)
        axes[r, 0].set_ylabel(f"query {q[0]},{q[1]}", fontsize=7)
        for b in range(depth):
            shown = _overlay(axes[r, b + 1], pixels, maps[r, b], q, grid, vmax)
            if r == 0:
                axes[r, b + 1].set_title(f"block {b + 1}", fontsize=7, pad=2)
    axes[0, 0].set_title(name, fontsize=6.5, pad=2)
    _scale_bar(fig, cax, shown, grid[0] * grid[1])
    return fig


def norm_maps_figure(pixels: np.ndarray, maps: np.ndarray, outliers: np.ndarray, name: str) -> plt.Figure:
    """The image, then the ℓ2 norm of each patch token leaving block 1…L (Darcet et al. Fig. 2), the
    high-norm outliers (:data:`vitscope.metrics.norms.OUTLIER_RULE`) boxed in cyan.

    ``maps``: ``[L, h, w]`` norms; ``outliers``: ``[L, h, w]`` bool; each block on its own scale, 0 to its
    largest norm (norms grow with depth), so the colour bar reads in units of each block's largest norm.
    """
    depth, h, w = maps.shape
    fig, axes, cax = _image_grid(
        1, depth + 1, "Darcet et al. Figs. 2, 3", "Patch-token norms through depth",
        "a few tokens far brighter than the rest (boxed: outliers) are patches repurposed as global scratch "
        "space (large, long-trained ViTs); evenly lit maps have none. Each block scaled to its own largest norm.")
    _overlay(axes[0, 0], pixels, None, None, (h, w))
    axes[0, 0].set_title(name, fontsize=6.5, pad=2)
    ph, pw = pixels.shape[0] / h, pixels.shape[1] / w
    for b in range(depth):
        ax = axes[0, b + 1]
        top = float(maps[b].max()) or 1.0
        shown = _overlay(ax, pixels, maps[b] / top, None, (h, w))
        for r, c in zip(*np.nonzero(outliers[b])):
            ax.add_patch(Rectangle((c * pw, r * ph), pw, ph, fill=False, ec="cyan", lw=1.2))
        ax.set_title(f"block {b + 1}\nmax {top:.3g}", fontsize=6.5, pad=2)
    bar = fig.colorbar(shown, cax=cax)
    bar.set_label("norm / block's largest", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return fig


def head_maps_figure(pixels: np.ndarray, maps: np.ndarray, query: tuple[int, int], name: str) -> plt.Figure:
    """Rows: heads; columns: blocks 1…L; one query. ``maps``: ``[L, H, h, w]``, one colour scale."""
    depth, heads = maps.shape[:2]
    grid = maps.shape[2:]
    fig, axes, cax = _image_grid(
        heads, depth, "Park et al. Fig. 2, per head", f"Attention of query {query[0]},{query[1]} of {name[:30]}, "
        "every head", "heads that agree with each other and ignore the query are homogeneous; one scale for "
        "all maps, the cyan tick is uniform attention.")
    vmax = float(maps.max())
    for h in range(heads):
        for b in range(depth):
            shown = _overlay(axes[h, b], pixels, maps[b, h], query, grid, vmax)
            if h == 0:
                axes[h, b].set_title(f"block {b + 1}", fontsize=7, pad=2)
        axes[h, 0].set_ylabel(f"head {h + 1}", fontsize=7)
    _scale_bar(fig, cax, shown, grid[0] * grid[1])
    return fig


def tokens_figure(before: np.ndarray, after: np.ndarray, names: Sequence[str], block: int,
                  explained: Sequence[float]) -> plt.Figure:
    """Patch tokens before (blue) and after (red) self-attention in one PCA, image centres as ×.

    ``before``, ``after``: ``[n_images, P, 2]``, one marker per image.
    """
    fig, ax = plt.subplots(figsize=(5.2, 4.6), layout="constrained")
    for i, name in enumerate(names):
        m = MARKERS[i % len(MARKERS)]
        for pts, colour, when in ((before[i], "tab:blue", "before"), (after[i], "tab:red", "after")):
            ax.scatter(pts[:, 0], pts[:, 1], s=10, marker=m, color=colour, alpha=0.55,
                       label=f"{name}: {when}", edgecolors="none")
            c = pts.mean(0)
            ax.scatter([c[0]], [c[1]], s=120, marker="x", color=colour, linewidths=2.5, zorder=5)
    ax.set(xlabel=f"PC 1 ({100 * explained[0]:.0f}% var.)", ylabel=f"PC 2 ({100 * explained[1]:.0f}% var.)")
    ax.legend(fontsize=7, loc="best")
    label_figure(fig, "Park et al. Fig. 6, E.3 left",
                 f"Patch tokens before/after self-attention of block {block}, one PCA fitted to both",
                 "all tokens shifted together = CL-like (the attention barely depends on the query); tokens "
                 "moved apart individually = MIM-like. × marks each image's centre.")
    return fig


def tsne_figure(emb: np.ndarray, image_of_token: np.ndarray, image_class: Sequence[str], block: int,
                perplexity: float) -> plt.Figure:
    """t-SNE of patch tokens: colour = class, marker = image within its class."""
    classes = list(dict.fromkeys(image_class))
    fig, ax = plt.subplots(figsize=(5.6, 4.8), layout="constrained")
    seen: dict[str, int] = {}
    for i, cls in enumerate(image_class):
        k = seen.get(cls, 0)
        seen[cls] = k + 1
        pts = emb[image_of_token == i]
        ax.scatter(pts[:, 0], pts[:, 1], s=6, marker=MARKERS[k % len(MARKERS)], alpha=0.6, edgecolors="none",
                   color=f"C{classes.index(cls)}", label=cls if k == 0 else None)
    ax.set(xticks=[], yticks=[], xlabel="t-SNE 1", ylabel="t-SNE 2")
    ax.legend(fontsize=7, markerscale=2.5, title="class (marker = image)", title_fontsize=7)
    label_figure(fig, "Park et al. Fig. E.2",
                 f"t-SNE of the patch tokens of {len(image_class)} images after block {block} "
                 f"(perplexity {perplexity:.3g})",
                 "one tight cluster per image = tokens of an image look alike (CL-like); "
                 "images intermingled = tokens keep their local content (MIM-like).")
    return fig


def nmi_kde_figure(runs: Sequence[tuple[str, Sequence[float]]], block: int) -> plt.Figure:
    """Gaussian KDE of the per-head NMI of one block, one curve and one row of head markers per run."""
    xs = np.linspace(0, 1, 201)
    fig, ax = plt.subplots(figsize=(5.2, 3.6), layout="constrained")
    for i, (label, values) in enumerate(runs):
        c = f"C{i}"
        density = gaussian_kde_curve(values, xs)
        if density is not None:
            ax.plot(xs, density, color=c, label=label)
        else:
            ax.plot([], [], color=c, label=f"{label} (KDE undefined)")
        ax.scatter(values, np.zeros(len(values)) - 0.04 * (i + 1), marker=MARKERS[(i * 2) % len(MARKERS)],
                   color=c, s=22, clip_on=False, zorder=4)
    ax.set_xlim(0, 1)
    ax.set(xlabel="normalized mutual information of a head", ylabel="density (Gaussian KDE)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(fontsize=7)
    label_figure(fig, "Park et al. Fig. E.1b", f"Per-head NMI of block {block}",
                 "a head far right of the others is an outlier that alone raises the block's mean NMI; "
                 "markers below the axis are the heads.")
    return fig
