"""One self-contained HTML page from saved results folders (no model is touched).

Every results folder (``analyze``, ``compare``, ``robustness``, ``probe``, ``pretrain``
outputs) becomes a section: its provenance (kind, model, data, image count, seed,
versions), a table of per-layer headline numbers where the kind has them, and its PNG
figures embedded inline, so the page can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from vitscope.results import read_json, write_atomic

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
th{background:#f4f4f4}td.k{text-align:left;font-weight:600}img{max-width:100%;margin:.5em 0;border:1px solid #eee}
code{background:#f4f4f4;padding:0 3px}
"""


def _provenance(r: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [("kind", str(r.get("kind", "?")))]
    model = r.get("model")
    if isinstance(model, dict):
        rows.append(("model", str(model.get("spec"))))
    elif model is not None:
        rows.append(("model", str(model)))
    if "models" in r:
        rows.append(("models", ", ".join(str(m.get("spec", m)) if isinstance(m, dict) else str(m)
                                         for m in r["models"])))
    data = r.get("data")
    if isinstance(data, dict):
        rows.append(("data", f"{data.get('spec')} ({data.get('images')} images, "
                             f"{len(data.get('skipped', []))} skipped)"))
    elif data is not None:
        rows.append(("data", json.dumps(data)[:200]))
    for key in ("seed", "device", "precision", "processes"):
        if key in r:
            rows.append((key, str(r[key])))
    if "versions" in r:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in r["versions"].items())))
    return rows


def _analysis_table(m: dict[str, Any]) -> str:
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


def section(folder: Path) -> str:
    """HTML for one results folder."""
    r = read_json(folder / "results.json") if (folder / "results.json").exists() else {}
    parts = [f"<h2>{html.escape(folder.name)}</h2>"]
    if r:
        parts.append("<table>" + "".join(f"<tr><td class=k>{html.escape(k)}</td><td style='text-align:left'>"
                                         f"{html.escape(v)}</td></tr>" for k, v in _provenance(r)) + "</table>")
        if r.get("kind") == "vitscope-analysis":
            parts.append(_analysis_table(r["metrics"]))
    for png in sorted(folder.glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        parts.append(f"<div><img alt='{html.escape(png.name)}' src='data:image/png;base64,{data}'></div>")
    return "\n".join(parts)


def build_report(folders: list[Path], out: Path, title: str = "vitscope report") -> Path:
    """Write ``out`` (an .html file) with one section per results folder."""
    body = "\n".join(section(f) for f in folders)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
    write_atomic(out, page.encode())
    return out
