"""The CL–MIM signature as a table: plain text for the terminal, Markdown, the report's HTML section."""

from __future__ import annotations

import html
from typing import Any


def table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per model × property × depth band: model, property, figure, band, position (or why
    none), the model's, CL's and MIM's raw values, the spread."""
    def num(v: float | None) -> str:
        return "" if v is None else f"{v:.3g}"

    rows = []
    for sig in result["signatures"]:
        for p in sig["properties"]:
            if "missing" in p:
                continue
            for band, b in p["bands"].items():
                pos = "does not separate" if b["position"] is None else f"{round(b['position'], 2) + 0.0:.2f}"  # no -0.00
                rows.append((sig["spec"], p["label"], p["figure"], band, pos, num(b["model"]), num(b["cl"]),
                             num(b["mim"]), num(b["spread"])))
    return rows


HEADER = ("model", "property", "figure", "band", "position s", "x", "x_CL", "x_MIM", "spread")


def _reference_line(result: dict[str, Any]) -> str:
    refs = {m["role"]: m["spec"] for m in result["models"] if m["role"] != "model"}
    return f"CL reference {refs['cl']}, MIM reference {refs['mim']}; {result['formula']}"


def _flag_lines(result: dict[str, Any]) -> list[str]:
    return [f"{sig['spec']}: {role} {text}" for sig in result["signatures"] for role, text in sig["flags"].items()] + \
        [f"{sig['spec']}: {n}" for sig in result["signatures"] for n in sig["notes"]]


def table_text(result: dict[str, Any]) -> str:
    """The table as aligned plain text for the terminal, with flags and notes."""
    rows = [HEADER, *table_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([_reference_line(result), *lines, *(f"! {f}" for f in _flag_lines(result))])


def table_markdown(result: dict[str, Any]) -> str:
    """The table as Markdown (e.g. for docs)."""
    row = lambda r: "| " + " | ".join(r) + " |\n"  # noqa: E731
    return row(HEADER) + row(("---",) * len(HEADER)) + "".join(row(r) for r in table_rows(result))


def table_html(result: dict[str, Any]) -> str:
    """The section of ``vitscope report`` for a ``signature.json``: references, flags, the table."""
    flags = "".join(f"<p><b>⚠ {html.escape(f)}</b></p>" for f in _flag_lines(result))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td class=k>{html.escape(c)}</td>" if i < 4 else f"<td>{html.escape(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in table_rows(result))
    return (f"<h3>CL–MIM signature</h3><p>{html.escape(_reference_line(result))}. Bands: first half "
            f"(block/L ≤ 1/2), later half (block/L &gt; 1/2).</p>{flags}<table><tr>{head}</tr>{body}</table>")
