"""The findings as tables: plain text for the terminal (``vitscope demo``, ``vitscope report``) and Markdown."""

from __future__ import annotations

from vitscope.reporting.findings.claims import FAILS, HOLDS, NO_DATA, NOT_MEANINGFUL, Claim, Verdict


MARK = {HOLDS: "✓", FAILS: "✗", NO_DATA: "–", NOT_MEANINGFUL: "○"}


def findings_text(rows: list[tuple[Claim, Verdict]], only_measured: bool = False) -> str:
    """The findings as a plain-text table (one line per claim) for the terminal."""
    lines = []
    for c, v in rows:
        if only_measured and v.status == NO_DATA:
            continue
        lines.append(f"{MARK[v.status]} {c.paper.split()[0]:8s} {c.figure:14s} {c.statement}\n      {v.numbers}")
    return "\n".join(lines)


def findings_markdown(rows: list[tuple[Claim, Verdict]]) -> str:
    """The findings as a Markdown table (paper, figure, claim, verdict, numbers), e.g. for docs."""
    head = "| paper | figure | claim | verdict | measured |\n| --- | --- | --- | --- | --- |\n"
    return head + "".join(f"| {c.paper} | {c.figure} | {c.statement} | {MARK[v.status]} {v.status} | "
                          f"{v.numbers.replace('|', '/')} |\n" for c, v in rows)
