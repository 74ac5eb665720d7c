"""Properties along training, from a ``trajectory.json`` alone: the table (``trajectory.md``, and the
report's section), the
curves against the training step (``trajectory.png``) and the heat maps block × step
(``trajectory_heatmap.png``).

The properties are the signature's per-block properties of an analysis
(:data:`vitscope.reporting.signature.properties.PROPERTIES`: attention distance over the uniform one,
NMI, the cosines, the token volume, the high-frequency amplitude), plus attention entropy over log N
(1 = uniform attention: untrained, or collapsed), the percentage of high-norm outlier tokens
(Darcet et al. Fig. 3) and, with a k-NN bank, the 20-NN accuracy of every block (Shekhar et al.
Fig. 3), each where the snapshots' results hold it. A curve summarises a property by
the mean over the later half of the blocks (⌊L/2⌋+1…L, as the findings and the signature do) and the
mean over the first half.
"""

from __future__ import annotations

import html
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from vitscope.reporting.plots import label_figure
from vitscope.reporting.signature.properties import PROPERTIES as SIGNATURE_PROPERTIES
from vitscope.reporting.signature.properties import Curve, ModelResults, Property
from vitscope.results import probe_accuracies


def entropy_fraction(m: ModelResults) -> Curve | None:
    """Attention entropy over its uniform value, H / log N per block (1: uniform attention)."""
    a = (m.analysis or {}).get("metrics", {}).get("attention")
    return Curve(np.asarray(a["entropy"], float) / a["max_entropy"]) if a else None


def outlier_percent(m: ModelResults) -> Curve | None:
    """Darcet et al. Fig. 3: the percentage of patch tokens that are high-norm outliers, per block."""
    n = (m.analysis or {}).get("metrics", {}).get("norms")
    return Curve(100 * np.asarray(n["outlier_fraction"], float)) if n else None


def knn_accuracy(m: ModelResults) -> Curve | None:
    """Shekhar et al. Fig. 3: the weighted 20-NN accuracy of every block (CLS token, GAP without one)."""
    acc = probe_accuracies(m.probe).get("knn", {}) if m.probe else {}
    return Curve(np.asarray(next(iter(acc.values())), float)) if acc else None


PROPERTIES: tuple[Property, ...] = tuple(p for p in SIGNATURE_PROPERTIES if p.source == "analysis") + (
    Property("attention_entropy", "attention entropy / log N", "no paper figure", "analysis", "",
             entropy_fraction),
    Property("norm_outliers", "high-norm outlier tokens (%)", "Darcet Fig. 3", "analysis", "", outlier_percent),
    Property("knn_accuracy", "20-NN accuracy", "Shekhar Fig. 3", "probe", "", knn_accuracy),
)


#: The range each property can take, drawn in full so that a change of 0.003 does not fill the panel:
#: (lowest, highest) with None for "as the data go" (a measured value outside is never cut off).
NATURAL_RANGE: dict[str, tuple[float | None, float | None]] = {
    "attention_distance": (0.0, 1.1), "nmi": (0.0, 1.0), "heads_cosine": (0.0, 1.0), "depth_cosine": (0.0, 1.0),
    "tokens_cosine": (0.0, 1.0), "attention_entropy": (0.0, 1.05), "norm_outliers": (0.0, 1.0),
    "knn_accuracy": (0.0, 1.0),
}


def natural_ylim(key: str, values: np.ndarray) -> tuple[float, float] | None:
    """The y-range of property ``key``'s panel: its :data:`NATURAL_RANGE`, widened to every finite value
    (e.g. a negative cosine), or None (matplotlib's own) for a property without one."""
    lo, hi = NATURAL_RANGE.get(key, (None, None))
    finite = values[np.isfinite(values)]
    if lo is None or hi is None or not finite.size:
        return None
    pad = 0.02 * (hi - lo)
    return min(lo, float(finite.min()) - pad), max(hi, float(finite.max()) + pad)


def snapshot_results(results: dict[str, Any], entry: dict[str, Any]) -> ModelResults:
    """One snapshot of a trajectory as the analysis results the property measures read."""
    return ModelResults(entry["path"], analysis={"model": results["model"], "metrics": entry["metrics"]},
                        probe=entry.get("probe"))


def property_matrix(results: dict[str, Any], prop: Property) -> np.ndarray | None:
    """``[snapshots, blocks]`` values of ``prop`` (None when no snapshot's analysis holds it)."""
    curves = [prop.measure(snapshot_results(results, e)) for e in results["snapshots"]]
    if all(c is None for c in curves):
        return None
    depth = max(len(c.values) for c in curves if c is not None)
    return np.array([c.values if c is not None else np.full(depth, np.nan) for c in curves], dtype=float)


def halves(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per snapshot, the mean over the first half of the blocks (1…⌊L/2⌋) and over the later half
    (⌊L/2⌋+1…L); one block: that block for both."""
    cut = matrix.shape[1] // 2
    later = matrix[:, cut:].mean(1)
    return (matrix[:, :cut].mean(1) if cut else later), later


def present(results: dict[str, Any]) -> list[tuple[Property, np.ndarray]]:
    """The properties the trajectory's analyses hold, with their matrices."""
    out = []
    for p in PROPERTIES:
        matrix = property_matrix(results, p)
        if matrix is not None:
            out.append((p, matrix))
    return out


def steps(results: dict[str, Any]) -> np.ndarray:
    return np.array([e["step"] for e in results["snapshots"]], dtype=float)


def loss_at(results: dict[str, Any], step: float) -> float | None:
    """The training loss of the last log record at or before ``step`` (None before the first)."""
    before = [r["loss"] for r in results["training_loss"] if r["step"] <= step]
    return before[-1] if before else None


def _grid(n: int) -> tuple[plt.Figure, np.ndarray]:
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows + 0.8), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    return fig, axes.flat


def trajectory_figure(results: dict[str, Any]) -> plt.Figure:
    """Per property, its later-half mean (solid) and first-half mean (dashed) against the training step,
    with the training loss on a second axis (grey) when the run's log is known."""
    props = present(results)
    fig, axes = _grid(max(1, len(props)))
    x = steps(results)
    loss = results["training_loss"]
    for ax, (p, matrix) in zip(axes, props):
        first, later = halves(matrix)
        ax.plot(x, later, "-o", ms=3, color="C0", label="later half")
        ax.plot(x, first, "--", lw=1, color="C0", alpha=0.6, label="first half")
        ax.set(xlabel=results.get("step_axis", "training step"), title=f"{p.label}\n({p.figure})")
        ax.title.set_fontsize(9)
        ax.ticklabel_format(axis="y", useOffset=False)
        ylim = natural_ylim(p.key, np.concatenate([first, later]))
        if ylim is not None:
            ax.set_ylim(*ylim)
        if loss:
            twin = ax.twinx()
            twin.plot([r["step"] for r in loss], [r["loss"] for r in loss], color="grey", lw=0.8, alpha=0.7)
            twin.set_ylabel("training loss (grey)", fontsize=7, color="grey")
            twin.tick_params(labelsize=7, colors="grey")
    if props:
        axes[0].legend(fontsize=7)
    label_figure(fig, "Park et al. Figs. 3–5, 7, 9; Darcet et al. Fig. 3", "Properties along training",
                 "each point is one snapshot analysed on the same images; watch when attention becomes global and "
                 "query-independent (distance up, NMI down: CL-like), when locality appears (MIM-like), and an "
                 "entropy back at log N (attention collapsed to uniform).")
    return fig


def heatmap_figure(results: dict[str, Any]) -> plt.Figure:
    """Per property, its value per block (rows) and snapshot (columns, labelled by training step)."""
    props = present(results)
    fig, axes = _grid(max(1, len(props)))
    labels = [str(e["step"]) for e in results["snapshots"]]
    every = max(1, len(labels) // 8)
    for ax, (p, matrix) in zip(axes, props):
        im = ax.imshow(matrix.T, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest",
                       extent=(-0.5, len(labels) - 0.5, 0.5, matrix.shape[1] + 0.5))
        ax.set_xticks(range(0, len(labels), every), labels[::every], fontsize=7)
        ax.set_yticks(range(1, matrix.shape[1] + 1, max(1, matrix.shape[1] // 8)))
        ax.set(xlabel=f"{results.get('step_axis', 'training step')} (snapshot)", ylabel="block",
               title=f"{p.label}\n({p.figure})")
        ax.title.set_fontsize(9)
        fig.colorbar(im, ax=ax).formatter.set_useOffset(False)
    label_figure(fig, "Park et al. Figs. 3–5, 7, 9; Darcet et al. Fig. 3",
                 "Properties along training, block by block",
                 "columns are snapshots in training order, rows blocks from the first (bottom) to the last.")
    return fig


def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The header and, per snapshot, its step, epoch, training loss and the later-half mean of every
    property present (as text)."""
    props = present(results)
    head = ["step", "epoch", "loss"] + [f"{p.label} (later half)" for p, _ in props]
    laters = [halves(m)[1] for _, m in props]

    def num(v: float | None) -> str:
        return "" if v is None or not np.isfinite(v) else f"{v:.4g}"

    rows = [[str(e["step"]), num(e.get("epoch")), num(loss_at(results, e["step"]))] + [num(v[i]) for v in laters]
            for i, e in enumerate(results["snapshots"])]
    return head, rows


def _settings_line(results: dict[str, Any]) -> str:
    st = results["settings"]
    return (f"Data: {st['data']} ({st['images'] or 'all'} images, seed {st['seed']}); metrics: "
            f"{', '.join(st['metrics'])}. Later half: mean over blocks ⌊L/2⌋+1…L.")


def table_markdown(results: dict[str, Any]) -> str:
    """``trajectory.md``: :func:`table_rows` under a title and the settings."""
    head, rows = table_rows(results)
    lines = [f"# Properties along training: {results.get('run') or 'checkpoints'}", "", _settings_line(results), "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def table_html(results: dict[str, Any]) -> str:
    """The report's trajectory section: :func:`table_rows` as an HTML table under the settings."""
    head, rows = table_rows(results)
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f"<h3>properties along training</h3><p>{html.escape(_settings_line(results))}</p><table><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f"</tr>{cells}</table>")
