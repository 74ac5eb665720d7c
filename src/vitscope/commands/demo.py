"""``vitscope demo``: the whole analysis on an embedded default, no download.

A ViT-Ti/16 with random (seeded) weights and 64 images drawn on the spot
(:mod:`vitscope.data.synthetic`). Random weights make the numbers a baseline, not a
finding: point ``vitscope analyze`` at real checkpoints for those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEMO_MODEL = "random:vit_tiny_patch16_224"


def register(app: typer.Typer) -> None:
    @app.command("demo", help=f"Analyse {DEMO_MODEL} on 64 generated images (no download).")
    def _cmd(
        out: Annotated[Path, typer.Option("--out", "-o", help="output folder")] = Path("out/demo"),
        images: Annotated[int, typer.Option(help="number of generated images")] = 64,
    ) -> None:
        from vitscope.commands.analyze import analyze
        from vitscope.data.synthetic import write_synthetic_folder
        from vitscope.report.html import build_report

        folder = write_synthetic_folder(out / "images", images, size=224)
        res = analyze(DEMO_MODEL, str(folder), out, batch_size=32)
        m = res["metrics"]
        typer.echo(f"model {DEMO_MODEL} (random weights), {res['data']['images']} generated images, "
                   f"{res['images_per_second']:.1f} img/s on {res['device']}")
        typer.echo("block  distance(px)   NMI   entropy  cos(heads) cos(tokens)  dLogAmp@hi")
        for i in range(len(m["attention"]["nmi"])):
            typer.echo(f"{i + 1:5d}  {m['attention']['distance'][i]:12.1f}  {m['attention']['nmi'][i]:5.3f}"
                       f"  {m['attention']['entropy'][i]:7.3f}  {m['similarity']['heads_cosine'][i]:10.3f}"
                       f"  {m['similarity']['tokens_cosine'][i]:10.3f}"
                       f"  {m['fourier']['delta_log_amplitude_at_highest'][i + 1]:10.3f}")
        report = build_report([out], out / "report.html", title=f"vitscope demo: {DEMO_MODEL}")
        typer.echo(f"results: {out / 'results.json'}; plots: {', '.join(sorted(p.name for p in out.glob('*.png')))}; "
                   f"report: {report}")
