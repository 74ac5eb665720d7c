"""The CL–MIM signature as a figure (``signature.png``): a row per property, each model's position by depth."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vitscope.reporting.signature.properties import WHOLE


#: the y range always shows both references (0 and 1) with a margin; values beyond LIMITS are
#: drawn at the edge as triangles, their value written beside them
LIMITS = (-2.0, 3.0)


def y_range(values: Sequence[float]) -> tuple[float, float]:
    """The natural y range of one row: [−0.25, 1.25] widened to the values (+0.15), within :data:`LIMITS`."""
    lo, hi = min([-0.1, *values]) - 0.15, max([1.1, *values]) + 0.15
    return max(lo, LIMITS[0]), min(hi, LIMITS[1])


def _dots(ax: Any, xs: Sequence[float], ys: Sequence[float | None], lim: tuple[float, float], color: str,
          line: bool) -> None:
    """Positions at ``xs`` (``None``: the references do not separate, a grey × on the lower edge);
    values beyond ``lim`` drawn as triangles on the edge with their value written."""
    pos = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if line and pos:
        ax.plot(*zip(*[(x, min(max(y, lim[0]), lim[1])) for x, y in pos]), color=color, lw=1.2)
    for x, y in pos:
        inside = lim[0] <= y <= lim[1]
        marker = "o" if inside else ("^" if y > lim[1] else "v")
        ax.plot(x, min(max(y, lim[0]), lim[1]), marker, color=color, ms=4.5, clip_on=inside)
        if not inside:
            ax.annotate(f"{y:.1f}", (x, min(max(y, lim[0]), lim[1])), fontsize=6.5, color=color,
                        xytext=(4, -3 if y > lim[1] else 1), textcoords="offset points")
    for x, y in zip(xs, ys):
        if y is None:
            ax.plot(x, lim[0] + 0.06 * (lim[1] - lim[0]), "x", color="0.55", ms=5)


def _axis_marks(ax: Any, lim: tuple[float, float]) -> None:
    ax.axhspan(0, 1, color="0.93", zorder=0)
    ax.axhline(1, color="tab:blue", ls="--", lw=0.9)
    ax.axhline(0, color="tab:orange", ls="--", lw=0.9)
    ax.set_ylim(*lim)


def signature_figure(result: dict[str, Any]) -> Any:
    """The figure of a signature (a matplotlib ``Figure``, ``signature.png``): a row per property (title: the property and its paper figure), where each model
    sits between the references (s = 1 CL, dashed blue; s = 0 MIM, dashed orange) by relative depth
    (left) and over the later half or the whole model (right)."""
    import matplotlib.pyplot as plt

    from vitscope.reporting.plots import label_figure

    sigs = result["signatures"]
    keys = [p["key"] for p in sigs[0]["properties"] if any("missing" not in q for s in sigs for q in s["properties"]
                                                          if q["key"] == p["key"])]
    deep = [any(p["key"] == k and p.get("per_depth") for s in sigs for p in s["properties"]) for k in keys]
    heights = [1.0 if d else 0.6 for d in deep]
    fig, axes = plt.subplots(len(keys), 2, figsize=(8.5, 1.25 * sum(heights) + 1.4), squeeze=False, sharey="row",
                             gridspec_kw={"width_ratios": [4, 1], "height_ratios": heights}, layout="constrained")
    colors = [f"C{i}" for i in (2, 3, 4, 5, 6, 7, 8, 9)]
    for row, key in enumerate(keys):
        ax, ax_s = axes[row]
        props = [(next(p for p in s["properties"] if p["key"] == key), colors[i % len(colors)], s["spec"])
                 for i, s in enumerate(sigs)]
        placed = [p for p, *_ in props if "missing" not in p]
        values = [b["position"] for p in placed for b in [*p["per_depth"], *p["bands"].values()]
                  if b["position"] is not None]
        lim = y_range(values)
        for a in (ax, ax_s) if deep[row] else (ax_s,):
            _axis_marks(a, lim)
        ax.set_title(f"{placed[0]['label']} — {placed[0]['figure']}", fontsize=8, loc="left")
        ax_s.text(1.03, 1, "CL", color="tab:blue", fontsize=7, va="center", transform=ax_s.get_yaxis_transform())
        ax_s.text(1.03, 0, "MIM", color="tab:orange", fontsize=7, va="center", transform=ax_s.get_yaxis_transform())
        for i, (p, color, spec) in enumerate(props):
            if "missing" in p:
                continue
            if p["per_depth"]:
                _dots(ax, [d["depth"] for d in p["per_depth"]], [d["position"] for d in p["per_depth"]], lim, color,
                      line=True)
            band = p["bands"].get("later half") or p["bands"].get(WHOLE)
            _dots(ax_s, [i], [band["position"]], lim, color, line=False)
        if deep[row]:
            ax.axvline(0.5, color="0.6", ls=":", lw=0.8)
            ax.set_ylabel("s", fontsize=8)
        else:  # a property of the whole model: its raw values here, its position on the right
            ax.axis("off")
            ax_s.tick_params(labelleft=True)
            ax.text(0, 0.5, "\n".join(f"{spec}: x = {b['model']:.3g}  (x_CL = {b['cl']:.3g}, x_MIM = {b['mim']:.3g})"
                                      for p, _, spec in props if "missing" not in p for b in p["bands"].values()),
                    transform=ax.transAxes, fontsize=7.5, va="center")
        ax.set_xlim(0, 1.02)
        ax_s.set_xlim(-0.7, len(sigs) - 0.3)
        ax_s.set_xticks([])
        ax.tick_params(labelsize=7, labelbottom=row == max(i for i, d in enumerate(deep) if d))
        ax_s.tick_params(labelsize=7)
    axes[max(i for i, d in enumerate(deep) if d), 0].set_xlabel("relative depth (block / L)", fontsize=8)
    axes[0, 1].set_title("later half /\nwhole model", fontsize=7.5)
    for i, s in enumerate(sigs):
        axes[0, 0].plot([], [], "o-", color=colors[i % len(colors)], label=s["spec"] + (
            "  ⚠ looks untrained" if "model" in s["flags"] else ""), ms=4)
    axes[0, 0].plot([], [], "x", color="0.55", label="references do not separate")
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, 1.6), ncols=2, frameon=False)
    refs = {m["role"]: m["spec"] for m in result["models"]}
    label_figure(fig, "each row names its figure in Park et al. 2023 or Shekhar et al. 2023",
                 f"CL–MIM signature: between CL reference {refs['cl']} and MIM reference {refs['mim']}",
                 "each row is one property x, placed at s = (x − x_MIM)/(x_CL − x_MIM): 1 is like the CL reference "
                 "(dashed blue), 0 like the MIM reference (dashed orange), the grey band lies between them; × marks "
                 "where the references differ by less than their spread, so no position is given.")
    return fig
