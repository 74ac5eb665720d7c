"""``vitscope report``: one HTML page from saved results folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vitscope.errors import VitscopeError


def register(app: typer.Typer) -> None:
    @app.command("report", help="One self-contained HTML page from results folders.\n\n"
                                "Put results folders (analyze, compare, robustness, probe, ...) side by side "
                                "in one self-contained HTML page.")
    def _cmd(
        folders: Annotated[list[Path], typer.Argument(help="results folders")],
        out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write")] = Path("report.html"),
        title: Annotated[str, typer.Option(help="page title")] = "vitscope report",
        family: Annotated[list[str] | None, typer.Option(
            help="NAME=FAMILY (cl, mim, hybrid; -ft for fine-tuned): models whose folder or spec contains NAME "
                 "belong to FAMILY; adds the table of the papers' claims checked on these results")] = None,
        findings_markdown: Annotated[Path | None, typer.Option(
            help="also write the claims table as Markdown to this file (needs --family)")] = None,
    ) -> None:
        from vitscope.report.findings import parse_families
        from vitscope.report.html import RESULT_FILES, build_report

        families = parse_families(family or [])

        for f in folders:
            if not f.is_dir() or not (any(f.glob("*.png")) or any((f / n).exists() for n in RESULT_FILES)):
                raise VitscopeError(f"{f} is not a results folder (no {', '.join(RESULT_FILES)} and no PNG figures)")
        if findings_markdown is not None:
            from vitscope.report.findings import check_claims, findings_markdown as as_markdown, gather
            from vitscope.results import write_atomic

            if not families:
                raise VitscopeError("--findings-markdown needs at least one --family NAME=FAMILY")
            write_atomic(findings_markdown, as_markdown(check_claims(gather(folders, families))).encode())
        typer.echo(str(build_report(folders, out, title, families)))
