"""``vitscope analyze``: every per-layer metric of one model over an image set, one pass."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vitscope.choices import SUPPORTED_SPECS
from vitscope.commands.options import BatchSize, Device, Precision, Progress, Seed

METRIC_HELP = ("comma-separated: attention (distance, NMI, entropy), similarity, spectrum, fourier, "
               "norms (patch-token norms and high-norm outliers, Darcet et al.; not default)")


def register(app: typer.Typer) -> None:
    @app.command("analyze", help=f"Attention, similarity, spectra and Fourier, layer by layer.\n\n"
                                 f"Per-layer metrics of one model over an image set, in one pass. "
                                 f"MODEL: {SUPPORTED_SPECS}. DATA: an image folder, a .npz file or cifar10[:split].")
    def _cmd(
        model: Annotated[str, typer.Option("--model", "-m", help="model spec")],
        data: Annotated[str, typer.Option("--data", "-d", help="image folder, .npz, or cifar10[:train|test]")],
        out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
        images: Annotated[int | None, typer.Option(help="analyse a seeded random subset of N images")] = None,
        batch_size: BatchSize = 64,
        device: Device = "auto",
        precision: Precision = "fp32",
        metrics: Annotated[str, typer.Option(help=METRIC_HELP)] = "attention,similarity,spectrum,fourier",
        seed: Seed = 0,
        workers: Annotated[int | None, typer.Option(help="DataLoader workers (default: cores - 1)")] = None,
        progress: Progress = True,
        plots: Annotated[bool, typer.Option(help="write one PNG per metric")] = True,
        decoder: Annotated[bool, typer.Option("--decoder", help="also the decoder of an MAE pretraining checkpoint, "
                                                                "mask ratio 0 (Park Fig. 10)")] = False,
        compile: Annotated[bool, typer.Option("--compile", help="torch.compile the attention and similarity "
                                                                "reductions: seconds to compile once per machine, "
                                                                "faster after")] = False,
    ) -> None:
        from vitscope.api import analyze

        res = analyze(model, data, out=out, images=images, batch_size=batch_size, device=device,
                      precision=precision, metrics=metrics, seed=seed, workers=workers, progress=progress,
                      plots=plots, decoder=decoder, compile=compile).results
        typer.echo(f"{res['data']['images']} images ({len(res['data']['skipped'])} skipped), "
                   f"{res['images_per_second']:.1f} img/s -> {out / 'results.json'}")
