"""``vitscope compare``: CKA by layer type and prediction agreement of two models (Shekhar et al.)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vitscope.choices import LAYER_TYPES, SUPPORTED_SPECS, TOKEN_REDUCTIONS
from vitscope.commands.options import BatchSize, Device, Precision, Progress, Seed
from vitscope.errors import VitscopeError


def compare(
    model: list[str] = typer.Option(..., "--model", "-m", help=f"Model spec, once (against itself) or twice: {SUPPORTED_SPECS}."),
    data: str = typer.Option(..., "--data", help="Images: a folder, a .npz file or cifar10[:split]."),
    out: Path = typer.Option(..., "--out", help="Folder for results.json and the cka_*.png heatmaps."),
    images: Optional[int] = typer.Option(1024, "--images", "-n", help="Number of images (seeded random subset); Shekhar et al. use 1024."),
    batch_size: BatchSize = 32,
    device: Device = "auto",
    precision: Precision = "fp32",
    token_reduction: str = typer.Option("flatten", "--token-reduction", help=f"Per-image features from the tokens: {', '.join(TOKEN_REDUCTIONS)}."),
    seed: Seed = 0,
    probe: list[str] = typer.Option([], "--probe", help="Linear probe file per model (from `vitscope probe`) for the agreement scores; default: the models' own heads."),
    layer_type: list[str] = typer.Option(list(LAYER_TYPES), "--layer-type", help=f"Layer types to compare: {', '.join(LAYER_TYPES)}."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Data loader worker processes (default: cores − 1, at most 8)."),
    progress: Progress = True,
) -> None:
    """Compare two models layer by layer (minibatch CKA) and by their predictions (Kendall's τ, F1)."""
    from vitscope.api import compare as compare_models

    if len(model) > 2:
        raise VitscopeError(f"compare takes one model (against itself) or two, got {len(model)}")
    results = compare_models(model[0], model[1] if len(model) == 2 else None, data, out=out, images=images,
                             batch_size=batch_size, device=device, precision=precision,
                             token_reduction=token_reduction, seed=seed, probes=probe, layer_types=layer_type,
                             workers=workers, progress=progress).results
    typer.echo(f"compared {results['data']['images']} images; results in {out / 'results.json'}")


def register(app: typer.Typer) -> None:
    app.command("compare", help=(
        "CKA of two models, layer by layer, and their agreement.\n\n"
        "Every layer pair by layer type (Shekhar et al.), Kendall's τ and F1 of the predictions. "
        "--batch-size ≥ 4 (Shekhar et al. use 32; the CKA estimate does not depend on it); --precision fp32 or "
        "bf16, HSIC accumulated in float64 regardless; random: weights get --seed, the second model seed + 1."))(compare)
