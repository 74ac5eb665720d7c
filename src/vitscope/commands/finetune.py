"""``vitscope finetune``: fine-tune a ViT end to end (layer decay, mixup/cutmix, drop path, re-init)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vitscope.commands.options import BatchSize, Device, Progress, Seed
from vitscope.eval.finetune_config import FinetuneConfig

_D = FinetuneConfig()


def finetune(
    model: Annotated[str, typer.Option(help="Model spec: timm:NAME, random:NAME, hf:REPO, PATH or PATH@ARCH.")],
    train_data: Annotated[str, typer.Option(help="Labelled training images: class folder, .npz with labels, cifar10:train.")],
    val_data: Annotated[str, typer.Option(help="Labelled validation images (same classes).")],
    out: Annotated[Path, typer.Option(help="Output folder: checkpoint.pt (vitscope checkpoint) and finetune.json.")],
    images: Annotated[Optional[int], typer.Option(help="Seeded random subset of the training images.")] = None,
    val_images: Annotated[Optional[int], typer.Option(help="Seeded random subset of the validation images.")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = _D.epochs,
    batch_size: BatchSize = _D.batch_size,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate [default: 1.25e-3 × batch / 512].")] = None,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = _D.weight_decay,
    layer_decay: Annotated[float, typer.Option(help="Layer-wise lr decay d: block i gets lr·d^(L−i).")] = _D.layer_decay,
    warmup_epochs: Annotated[int, typer.Option(help="Linear warm-up epochs.")] = _D.warmup_epochs,
    mixup: Annotated[float, typer.Option(help="Mixup alpha (0 = off).")] = _D.mixup,
    cutmix: Annotated[float, typer.Option(help="CutMix alpha (0 = off).")] = _D.cutmix,
    smoothing: Annotated[float, typer.Option(help="Label smoothing.")] = _D.smoothing,
    drop_path: Annotated[float, typer.Option(help="Stochastic depth rate of the last block.")] = _D.drop_path,
    clip_grad: Annotated[float, typer.Option(help="Gradient norm clip (0 = off).")] = _D.clip_grad,
    randaug: Annotated[str, typer.Option(help="timm RandAugment string ('' = off).")] = _D.randaug,
    reinit: Annotated[str, typer.Option(help="Re-initialise blocks before fine-tuning: first:K or last:K.")] = "",
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT/checkpoint.pt.")] = False,
    device: Device = "auto",
    workers: Annotated[Optional[int], typer.Option(help="Data-loading worker processes.")] = None,
    seed: Seed = 0,
    progress: Progress = True,
) -> None:
    """Fine-tune a ViT end to end, optionally re-initialising blocks.

    Park et al. Table A.1 recipe, scaled down (layer decay, mixup/cutmix, drop path); with --reinit, Fig. F.3.
    """
    from vitscope.api import finetune as run_finetune

    results = run_finetune(
        model, train_data, val_data, out=out, images=images, val_images=val_images, epochs=epochs,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, layer_decay=layer_decay,
        warmup_epochs=warmup_epochs, mixup=mixup, cutmix=cutmix, smoothing=smoothing, drop_path=drop_path,
        clip_grad=clip_grad, randaug=randaug, reinit=reinit, resume=resume, device=device, workers=workers,
        seed=seed, progress=progress).results
    typer.echo(f"final-epoch val accuracy {100 * results['accuracy']:.2f}%; checkpoint {results['checkpoint']}")


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
