"""``vitscope report``: one HTML page from saved results folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


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
        from vitscope.api import report

        typer.echo(str(report(folders, out, title=title, families=family or [],
                              findings_markdown=findings_markdown)))
