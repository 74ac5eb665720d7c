"""``vitscope signature``: where a model sits between contrastive (CL) and masked image modelling (MIM).

Parses the options and prints the table; the work is :func:`vitscope.api.signature` (gathering
results, the default references) and :mod:`vitscope.reporting.signature` (the math).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vitscope.commands.options import BatchSize, Device, Progress, Seed


def register(app: typer.Typer) -> None:
    @app.command("signature", help="Where a model sits between CL and MIM, per property and depth.\n\n"
                                   "Where a model sits between contrastive (CL) and masked image modelling "
                                   "(MIM), per property and depth: s = (x - x_MIM) / (x_CL - x_MIM). RESULTS: "
                                   "analyze, probe, robustness or compare folders of the model(s) under study.")
    def _cmd(
        results: Annotated[list[Path], typer.Argument(help="results folders of the model(s) under study")],
        out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
        reference: Annotated[list[str] | None, typer.Option(
            help="RESULTS=cl or RESULTS=mim (repeatable, both needed); default: the zoo's MoCo v3 and SimMIM "
                 "analysed on the shipped CIFAR-10 images (32-px models only)")] = None,
        batch_size: BatchSize = 100,
        seed: Seed = 0,
        device: Device = "auto",
        workers: Annotated[int, typer.Option(help="data-loading processes (for the default references)")] = 0,
        progress: Progress = True,
    ) -> None:
        from vitscope.api import signature
        from vitscope.reporting.signature import parse_references, table_text

        refs = parse_references(reference or [])
        result = signature(results, cl=[f for f, fam in refs.items() if fam == "cl"],
                           mim=[f for f, fam in refs.items() if fam == "mim"], out=out, batch_size=batch_size,
                           seed=seed, device=device, workers=workers, progress=progress)
        typer.echo(table_text(result.results))
        typer.echo(f"-> {out / 'signature.json'}, {out / 'signature.png'}, {out / 'signature.md'}")
