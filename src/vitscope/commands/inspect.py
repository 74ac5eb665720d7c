"""``vitscope inspect``: single-image figures (attention maps, tokens, t-SNE, NMI KDE) + explorer.html."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vitscope.choices import SUPPORTED_SPECS
from vitscope.commands.options import BatchSize, Device, Precision, Progress, Seed
from vitscope.errors import VitscopeError


def register(app: typer.Typer) -> None:
    @app.command("inspect", help="Single images: attention maps, tokens, t-SNE, NMI KDE.\n\n"
                                 "Pictures of single images: attention maps of query patches through depth "
                                 "(Park Fig. 2), tokens before/after self-attention (Fig. 6), t-SNE of tokens "
                                 "(Fig. E.2), per-head NMI KDE from results.json (Fig. E.1b) and explorer.html. "
                                 f"MODEL: {SUPPORTED_SPECS}.")
    def _cmd(
        out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
        model: Annotated[str | None, typer.Option("--model", "-m", help="model spec")] = None,
        image: Annotated[list[Path] | None, typer.Option("--image", help="an image file (repeatable)")] = None,
        data: Annotated[Path | None, typer.Option("--data", "-d", help="an image folder (class sub-folders or flat)")] = None,
        images: Annotated[int, typer.Option(help="with --data: seeded choice of N images spread over the classes")] = 18,
        classes: Annotated[list[str] | None, typer.Option("--class", help="with --data: class folder to draw from "
                                                                           "(repeatable; default the first 3)")] = None,
        query: Annotated[list[str] | None, typer.Option(help="query patch ROW,COL, 0-based (repeatable; "
                                                             "default the centre and the top-left corner)")] = None,
        heads: Annotated[bool, typer.Option("--heads", help="also draw every head's map")] = False,
        block: Annotated[int | None, typer.Option(help="block (1-based) for tokens, t-SNE and NMI KDE; default last")] = None,
        maps: Annotated[int, typer.Option(help="images that get attention-map figures")] = 2,
        explorer_images: Annotated[int, typer.Option(help="images embedded in explorer.html (fewer if too large)")] = 4,
        results: Annotated[list[Path] | None, typer.Option(help="analysis results.json (or folder) for the NMI KDE "
                                                               "(repeatable)")] = None,
        label: Annotated[list[str] | None, typer.Option(help="one label per --results")] = None,
        device: Device = "auto",
        precision: Precision = "fp32",
        seed: Seed = 0,
        batch_size: BatchSize = 8,
        progress: Progress = True,
        perplexity: Annotated[float, typer.Option(help="t-SNE perplexity (capped at (tokens-1)/3)")] = 30.0,
    ) -> None:
        from vitscope.api import inspect

        if model is None and not results:
            raise VitscopeError("give --model (with --image or --data) and/or --results")
        if model is not None and bool(image) == (data is not None):
            raise VitscopeError("give the images either as --image PATH (repeatable) or as --data FOLDER, "
                                "not both/neither")
        files = inspect(model, image or data, out=out, images=images, classes=classes or (), query=query or (),
                        heads=heads, block=block, maps=maps, explorer_images=explorer_images, results=results or (),
                        labels=label or (), device=device, precision=precision, seed=seed, perplexity=perplexity,
                        batch_size=batch_size, progress=progress).files
        typer.echo(f"{len(files)} files -> {out}: {', '.join(files)}; {out / 'inspect.json'}")
