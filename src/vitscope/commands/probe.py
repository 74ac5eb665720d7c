"""``vitscope probe``: k-NN and linear probes after every block of a frozen ViT."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vitscope.choices import KNN_K, KNN_TEMPERATURE, PROBE_OPTIMIZERS, TOKEN_FEATURES
from vitscope.commands.options import BatchSize, Device, Progress, Seed


def probe(
    model: Annotated[str, typer.Option(help="Model spec: timm:NAME, random:NAME, hf:REPO, PATH or PATH@ARCH.")],
    train_data: Annotated[str, typer.Option(help="Labelled training images: class folder, .npz with labels, cifar10:train.")],
    val_data: Annotated[str, typer.Option(help="Labelled validation images (same classes).")],
    out: Annotated[Path, typer.Option(help="Output folder: probe.json, knn.png, linear.png, probe.pt, features/.")],
    images: Annotated[Optional[int], typer.Option(help="Seeded random subset of the training images.")] = None,
    val_images: Annotated[Optional[int], typer.Option(help="Seeded random subset of the validation images.")] = None,
    knn: Annotated[bool, typer.Option("--knn/--no-knn", help="Weighted k-NN per block.")] = True,
    linear: Annotated[bool, typer.Option("--linear/--no-linear", help="Linear probe per block.")] = True,
    features: Annotated[str, typer.Option(help=f"Comma-separated token features of {list(TOKEN_FEATURES)}.")] = ",".join(TOKEN_FEATURES),
    epochs: Annotated[int, typer.Option(help="Linear-probe epochs (the final epoch is reported).")] = 50,
    batch_size: BatchSize = 256,
    optimizer: Annotated[str, typer.Option(help=f"Probe optimizer, one of {list(PROBE_OPTIMIZERS)}.")] = "sgd",
    lr: Annotated[Optional[float], typer.Option(help="Probe learning rate [default: 0.1 (sgd) or 1e-3 (adamw) × batch/256].")] = None,
    weight_decay: Annotated[float, typer.Option(help="Probe weight decay.")] = 0.0,
    k: Annotated[int, typer.Option("--k", help="Neighbours of the k-NN vote.")] = KNN_K,
    temperature: Annotated[float, typer.Option(help="k-NN temperature T (weights exp(sim/T)).")] = KNN_TEMPERATURE,
    save_probe: Annotated[bool, typer.Option("--save-probe", help="Write OUT/probe.pt (see --probe-at).")] = False,
    probe_at: Annotated[str, typer.Option(
        help="Which probe --save-probe writes: 'pooled' (final features) or FEATURE:BLOCK, e.g. cls:11.")] = "pooled",
    cache_features: Annotated[bool, typer.Option("--cache-features/--no-cache-features",
                                                 help="Memory-map features under OUT/features and reuse them.")] = True,
    device: Device = "auto",
    workers: Annotated[Optional[int], typer.Option(help="Data-loading worker processes.")] = None,
    seed: Seed = 0,
    progress: Progress = True,
) -> None:
    """k-NN and linear probes after every block.

    k-NN (k=20, T=0.07) and linear probes on CLS / GAP / GAP-without-prefix features of every block.
    """
    from vitscope.api import probe as run_probe
    from vitscope.results import probe_accuracies

    results = run_probe(model, train_data, val_data, out=out, images=images, val_images=val_images, knn=knn,
                        linear=linear, features=features, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                        lr=lr, weight_decay=weight_decay, k=k, temperature=temperature, save_probe=save_probe,
                        probe_at=probe_at, cache_features=cache_features, device=device, workers=workers, seed=seed,
                        progress=progress).results
    for method, acc in probe_accuracies(results).items():
        for kind, values in acc.items():
            typer.echo(f"{method:6s} {kind:13s} " + " ".join(f"{100 * v:5.1f}" for v in values))
    typer.echo(f"results: {out / 'probe.json'}")


def register(app: typer.Typer) -> None:
    app.command("probe")(probe)
