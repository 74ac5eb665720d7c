"""One self-contained HTML page from saved results folders (no model is touched).

Every results folder (``analyze``, ``compare``, ``robustness``, ``probe``, ``pretrain``,
``signature``, ``trajectory`` outputs) becomes a section: its provenance (kind, model, data, image count, seed,
versions), a table of per-layer headline numbers where the kind has them, and its PNG
figures embedded inline, so the page can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from vitscope.results import TRAJECTORY, probe_accuracies, read_results, write_atomic

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
th{background:#f4f4f4}td.k{text-align:left;font-weight:600}img{max-width:100%;margin:.5em 0;border:1px solid #eee}
code{background:#f4f4f4;padding:0 3px}
"""


RESULT_FILES = ("results.json", "probe.json", "finetune.json", "inspect.json")


def _spec(m: Any) -> str:
    return str(m.get("spec", m)) if isinstance(m, dict) else str(m)


def _provenance(r: dict[str, Any], name: str) -> list[tuple[str, str]]:
    """Key facts of any vitscope results file, whose commands nest them differently."""
    prov = r.get("provenance") if isinstance(r.get("provenance"), dict) else {}
    f = {**prov.get("config", {}), **prov, **r}
    rows: list[tuple[str, str]] = [("file", name), ("kind", str(f.get("kind", f.get("format", name))))]
    if "models" in f:
        rows.append(("models", ", ".join(_spec(m) for m in f["models"])))
    elif "model" in f:
        rows.append(("model", _spec(f["model"])))
    data = f.get("data")
    if isinstance(data, dict):
        skipped = data.get("skipped", [])
        n_skipped = skipped if isinstance(skipped, int) else len(skipped)
        rows.append(("data", f"{data.get('spec')} ({data.get('images')} images, {n_skipped} skipped)"))
    elif data is not None:
        rows.append(("data", str(data)))
    for key in ("train_data", "val_data", "train_images", "val_images", "seed", "device", "precision", "processes"):
        if key in f:
            rows.append((key, str(f[key])))
    if isinstance(f.get("versions"), dict):
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in f["versions"].items())))
    return rows


def _per_block_table(cols: list[tuple[str, list[Any]]]) -> str:
    """Columns of per-block numbers as an HTML table, block 1 first."""
    if not cols:
        return ""
    depth = max(len(c) for _, c in cols)
    head = "".join(f"<th>{html.escape(n)}</th>" for n, _ in cols)
    body = "".join(
        "<tr><td>" + str(i + 1) + "</td>" + "".join(
            f"<td>{c[i]:.4g}</td>" if i < len(c) and isinstance(c[i], (int, float)) else "<td></td>"
            for _, c in cols) + "</tr>"
        for i in range(depth))
    return f"<table><tr><th>block</th>{head}</tr>{body}</table>"


def _probe_columns(r: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    return [(f"{method} {feat}", v) for method, acc in probe_accuracies(r).items()
            for feat, v in acc.items() if feat != "pooled"]


def _analysis_columns(m: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    cols: list[tuple[str, list[Any]]] = []
    if "attention" in m:
        a = m["attention"]
        cols += [("distance (px)", a["distance"]), ("NMI", a["nmi"]), ("NMI std (heads)", a["nmi_std_over_heads"]),
                 ("entropy", a["entropy"])]
    if "similarity" in m:
        s = m["similarity"]
        cols += [("cos heads", s["heads_cosine"]), ("cos before/after", s["depth_cosine"]),
                 ("cos tokens", s["tokens_cosine"])]
    if "fourier" in m:
        f = m["fourier"]
        cols.append((f"ΔlogAmp @{f['highest_freq_over_pi']:.3g}π", f["delta_log_amplitude_at_highest"][1:]))
    if "norms" in m:
        n = m["norms"]
        cols += [("norm median", n["median"]), ("norm p99", n["p99"]),
                 ("norm outliers %", [100 * v for v in n["outlier_fraction"]])]
    return cols


def section(folder: Path) -> str:
    """HTML for one results folder."""
    parts = [f"<h2>{html.escape(folder.name)}</h2>"]
    for name in RESULT_FILES:
        if not (folder / name).exists():
            continue
        r = read_results(folder / name, reader="report")
        parts.append("<table>" + "".join(f"<tr><td class=k>{html.escape(k)}</td><td style='text-align:left'>"
                                         f"{html.escape(v)}</td></tr>" for k, v in _provenance(r, name)) + "</table>")
        cols = _analysis_columns(r["metrics"]) if r.get("kind") == "vitscope-analysis" else _probe_columns(r)
        parts.append(_per_block_table(cols))
    if (folder / "signature.json").exists():  # written by `vitscope signature`
        from vitscope.reporting.signature import read_signature, table_html

        parts.append(table_html(read_signature(folder / "signature.json")))
    if (folder / "trajectory.json").exists():  # written by `vitscope trajectory`
        from vitscope.reporting.trajectory import table_html as trajectory_table

        parts.append(trajectory_table(read_results(folder / "trajectory.json", TRAJECTORY)))
    for png in sorted(folder.glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        parts.append(f"<div><img alt='{html.escape(png.name)}' src='data:image/png;base64,{data}'></div>")
    if (folder / "explorer.html").exists():  # written by `vitscope inspect`; embedded whole, still one file
        parts.append("<h3>attention explorer</h3><iframe title='attention explorer' style='width:100%;height:600px;"
                     f"border:1px solid #ddd' srcdoc=\"{html.escape((folder / 'explorer.html').read_text())}\"></iframe>")
    return "\n".join(parts)


def findings_section(folders: list[Path], families: dict[str, str]) -> str:
    """The papers' claims checked on ``folders`` (:mod:`vitscope.reporting.findings`): the decided
    claims as a table, then one line naming what would decide the rest, whose table is behind a fold."""
    from vitscope.reporting.findings import MARK, NO_DATA, check_claims, gather, undecided_by

    ev = gather(folders, families)
    rows = check_claims(ev)

    def table(claims: list[Any]) -> str:
        body = "".join(
            f"<tr><td style='text-align:center'>{MARK[v.status]}</td><td class=k>{html.escape(c.paper)}, "
            f"{html.escape(c.figure)}</td><td style='text-align:left'>{html.escape(c.statement)}</td>"
            f"<td style='text-align:left'>{html.escape(v.status)}: {html.escape(v.numbers)}</td></tr>"
            for c, v in claims)
        return f"<table><tr><th></th><th>paper, figure</th><th>claim</th><th>measured</th></tr>{body}</table>"

    decided = [(c, v) for c, v in rows if v.status != NO_DATA]
    undecided = [(c, v) for c, v in rows if v.status == NO_DATA]
    fams = ", ".join(f"{html.escape(k)} = {html.escape(v)}" for k, v in families.items())
    page = (f"<h2>Findings: the papers' claims on these results</h2><p>Families: {fams}. "
            f"✓ holds, ✗ does not hold, ○ not meaningful (a fine-tuned model below its own linear probe), – not enough data in the folders given.</p>"
            + (table(decided) if decided else ""))
    if undecided:
        needs = ", ".join(undecided_by(ev)) or "the results each claim names below"
        page += (f"<p>{len(undecided)} of the {len(rows)} claims are not decided by these folders; they need {html.escape(needs)} "
                 "(<code>scripts/reproduce.sh</code> runs every experiment of both papers).</p>"
                 f"<details><summary>the {len(undecided)} claims not decided here</summary>{table(undecided)}</details>")
    return page


def build_report(folders: list[Path], out: Path, title: str = "vitscope report",
                 families: dict[str, str] | None = None) -> Path:
    """Write ``out`` (an .html file): the findings table when ``families`` are given, then one
    section per results folder."""
    body = (findings_section(folders, families) if families else "") + "\n".join(section(f) for f in folders)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
    write_atomic(out, page.encode())
    return out
