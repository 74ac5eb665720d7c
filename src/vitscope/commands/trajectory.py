"""``vitscope trajectory``: the properties of every snapshot of a training run, on the same images.

Parses the options and prints where the files went; the work is :func:`vitscope.api.trajectory`
(the engine: :mod:`vitscope.snapshots`; the table and figures: :mod:`vitscope.reporting.trajectory`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vitscope.commands.options import BatchSize, Device, Precision, Progress, Seed

METRIC_HELP = "comma-separated, as analyze takes them: attention, similarity, spectrum, fourier, norms"


def register(app: typer.Typer) -> None:
    @app.command("trajectory", help="Properties along training: analyze every snapshot of a run.\n\n"
                                    "RUN_OR_CHECKPOINTS: a `vitscope pretrain` run folder trained with --set "
                                    "snapshot_every=N, a folder of checkpoint files, or checkpoint files. Each "
                                    "snapshot is analysed in one pass on the same images; trajectory.json, "
                                    "trajectory.md and figures (property vs step, block x step). Resumable.")
    def _cmd(
        sources: Annotated[list[Path], typer.Argument(metavar="RUN_OR_CHECKPOINTS...",
                                                      help="run folder, folder of checkpoints, or checkpoint files")],
        data: Annotated[str, typer.Option("--data", "-d", help="image folder, .npz, or cifar10[:train|test]")],
        out: Annotated[Path, typer.Option("--out", "-o", help="output folder (continued when it holds a "
                                                              "trajectory.json of the same settings)")],
        images: Annotated[int | None, typer.Option(help="analyse a seeded random subset of N images")] = None,
        metrics: Annotated[str, typer.Option(help=METRIC_HELP)] = "attention,similarity,fourier,norms",
        batch_size: BatchSize = 64,
        device: Device = "auto",
        precision: Precision = "fp32",
        seed: Seed = 0,
        workers: Annotated[int | None, typer.Option(help="DataLoader workers (default: cores - 1)")] = None,
        progress: Progress = True,
        plots: Annotated[bool, typer.Option(help="write trajectory.png and trajectory_heatmap.png")] = True,
        knn: Annotated[str | None, typer.Option(help="labelled bank (folder, .npz, cifar10:train): also the 20-NN "
                                                     "accuracy of every block of each snapshot, --data labelled "
                                                     "too")] = None,
    ) -> None:
        from vitscope.api import trajectory

        t = trajectory(sources, data, out=out, images=images, metrics=metrics, batch_size=batch_size, device=device,
                       precision=precision, seed=seed, workers=workers, progress=progress, plots=plots, knn=knn)
        steps = [e["step"] for e in t.snapshots]
        typer.echo(f"{len(steps)} snapshots (steps {steps[0]}–{steps[-1]}) -> {out / 'trajectory.json'}, "
                   f"{out / 'trajectory.md'}" + (f", {out / 'trajectory.png'}" if plots else ""))
