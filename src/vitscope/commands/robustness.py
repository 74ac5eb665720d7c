"""``vitscope robustness``: frequency-band noise accuracy and cue-conflict shape bias."""

from __future__ import annotations

from typing import Optional

import typer

from vitscope.choices import NOISE_FREQUENCIES
from vitscope.commands.options import BatchSize, Device, Progress, Seed
from vitscope.errors import VitscopeError


def parse_frequencies(text: str) -> list[float]:
    """``"0,0.1,0.5"`` → ``[0.0, 0.1, 0.5]`` (units of π)."""
    try:
        return [float(f) for f in text.split(",") if f.strip()]
    except ValueError as e:
        raise VitscopeError(f"--frequencies must be comma-separated numbers (units of π), got '{text}'") from e


def register(app: typer.Typer) -> None:
    @app.command("robustness")
    def robustness(
        model: list[str] = typer.Option(
            ..., "--model", help="Model spec (repeatable): timm:NAME, random:NAME, hf:REPO, PATH[@ARCH]."),
        probe: Optional[list[str]] = typer.Option(
            None, "--probe", help="Linear probe per --model, in order ('none' = the model's own head)."),
        data: Optional[str] = typer.Option(
            None, "--data", help="Labelled images for the noise analysis: folder, .npz or cifar10[:split]."),
        cue_conflict: Optional[str] = typer.Option(
            None, "--cue-conflict", help="Cue-conflict stimuli (Geirhos et al.): extracted folder or the .tar."),
        out: str = typer.Option(..., "--out", help="Output folder for results.json and the plots."),
        images: Optional[int] = typer.Option(
            None, "--images", help="Seeded random subset of N images per analysis (default: all)."),
        batch_size: BatchSize = 64,
        device: Device = "auto",
        noise_strength: float = typer.Option(
            0.1, "--noise-strength", help="RMS of the band noise in pixel units (images in [0, 1])."),
        frequencies: str = typer.Option(
            ",".join(map(str, NOISE_FREQUENCIES)), "--frequencies",
            help="Band centres, comma-separated, in units of π."),
        band_width: float = typer.Option(0.1, "--band-width", help="Band width in units of π (Park et al.: 0.1)."),
        band_norm: str = typer.Option(
            "max", "--band-norm", help="Frequency magnitude: max (square annulus, as Park & Kim) or radial."),
        noise_scale: str = typer.Option(
            "band", "--noise-scale",
            help="band: each image's band noise has RMS = strength; "
                 "white: white noise of std = strength, filtered (Park & Kim's code)."),
        seed: Seed = 0,
        class_map: Optional[list[str]] = typer.Option(
            None, "--class-map",
            help="category=class, cifar10 (the 7 categories CIFAR-10 shares), or a JSON / "
                 "'category=class' lines file (repeatable); needed for classifiers that are not 1000-class ImageNet ones."),
        workers: Optional[int] = typer.Option(None, "--workers", help="DataLoader worker processes."),
        progress: Progress = True,
    ) -> None:
        """Accuracy under band-limited noise; cue-conflict shape bias.

        Accuracy under frequency-band noise (Park et al. Fig. 8b) and shape bias on cue-conflict images (Fig. 8a).
        """
        from vitscope.api import robustness as run

        results = run(list(model), data, cue_conflict=cue_conflict, probes=probe or [], out=out, images=images,
                      batch_size=batch_size, device=device, noise_strength=noise_strength,
                      frequencies=parse_frequencies(frequencies), band_width=band_width, band_norm=band_norm,
                      noise_scale=noise_scale, seed=seed, class_map=class_map or [], workers=workers,
                      progress=progress).results
        for entry in results["models"]:
            line = [entry["spec"] + (f" + {entry['probe']}" if entry["probe"] else "")]
            if "noise" in entry:
                nz = entry["noise"]
                line.append(f"clean acc {nz['clean_accuracy']:.3f}, max drop {max(nz['drop']):.3f}")
            if "shape_bias" in entry:
                sb = entry["shape_bias"]["shape_bias"]
                line.append("shape bias " + ("n/a" if sb is None else f"{sb:.3f}"))
            typer.echo(": ".join(line[:1]) + ": " + "; ".join(line[1:]))
        typer.echo(f"wrote {out}/results.json")
