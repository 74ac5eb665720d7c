"""``vitscope plot``: overlay saved analysis results of several models, like the papers' figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("plot", help="Overlay analyze results; training curves of pretrain runs.\n\n"
                              "Overlay results.json files of `vitscope analyze` into one PNG per metric; "
                              "pretraining run folders (log.jsonl) give training_loss.png instead.")
    def _cmd(
        results: Annotated[list[Path], typer.Argument(help="results.json files (or their folders), or "
                                                             "`vitscope pretrain` run folders")],
        out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
        label: Annotated[list[str] | None, typer.Option(help="one label per results file")] = None,
    ) -> None:
        from vitscope.reporting.plots import plot_all
        from vitscope.reporting.training import plot_training_curves
        from vitscope.results import read_analysis
        from vitscope.runlog import read_log

        if all((p / "log.jsonl").is_file() for p in results):
            logs = [(label[i] if label and i < len(label) else p.name, read_log(p)) for i, p in enumerate(results)]
            typer.echo(str(plot_training_curves(logs, out / "training_loss.png")))
            return
        runs = []
        for i, p in enumerate(results):
            r = read_analysis(p, reader="plot")
            runs.append((label[i] if label and i < len(label) else r["model"]["spec"], r["metrics"]))
        for path in plot_all(runs, out):
            typer.echo(str(path))
