"""``vitscope pretrain``: train a ViT with MoCo v3, SimMIM, MAE or the CL + MIM hybrid.

Settings are layered: :class:`~vitscope.train.config.PretrainConfig` defaults, then
``--config FILE.json``, then the options below and ``--set KEY=VALUE`` (any config key).
Many GPUs: ``torchrun --nproc_per_node K -m vitscope pretrain ...`` (``--batch-size`` is
global). The run folder holds ``checkpoint.pt``, ``config.json``, ``log.jsonl`` and, when the
run ends, ``pretrain.json`` (``vitscope.read``). A thin wrapper of :func:`vitscope.pretrain`.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from vitscope.commands.options import BATCH_SIZE, DEVICE, PRECISION, SEED, Progress
from vitscope.train.config import PretrainConfig, load_config_file, parse_set


def pretrain(
    method: Optional[str] = typer.Option(None, help="moco | dino | simmim | mae | hybrid (default moco)"),
    model: Optional[str] = typer.Option(
        None, help="timm name (fresh weights), random:NAME, timm:NAME or a checkpoint (default vit_tiny_patch4_32)"),
    data: Optional[str] = typer.Option(
        None, help="image folder, FILE.npz, or cifar10[:train|test] (default cifar10:train)"),
    epochs: Optional[int] = typer.Option(None, help="(default 100)"),
    batch_size: Annotated[Optional[int], BATCH_SIZE] = None,
    lr: Optional[float] = typer.Option(None, help="peak learning rate (default: base lr × batch / 256)"),
    lam: Optional[float] = typer.Option(
        None, "--lambda", help="hybrid weight λ: L = (1-λ)·L_MIM + λ·L_CL (default 0.5)"),
    mim: Optional[str] = typer.Option(None, help="hybrid's MIM objective: simmim | mae"),
    out: Optional[str] = typer.Option(
        None, help="run folder: checkpoints, config.json, log.jsonl (default runs/pretrain)"),
    resume: bool = typer.Option(False, help="continue the run in --out from its checkpoint"),
    save_every: Optional[int] = typer.Option(None, help="epochs between checkpoints (default 10)"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model"),
    local_attention: Optional[int] = typer.Option(None, help="odd K: patches attend to a K×K window only"),
    num_images: Optional[int] = typer.Option(None, help="train on a seeded subset of this many images"),
    seed: Annotated[Optional[int], SEED] = None,
    device: Annotated[Optional[str], DEVICE] = None,
    precision: Annotated[Optional[str], PRECISION] = None,
    progress: Progress = True,
    config: Optional[str] = typer.Option(None, help="JSON file of config keys"),
    set_: list[str] = typer.Option([], "--set", help="KEY=VALUE for any config key (repeatable)"),
) -> None:
    """Pretrain a ViT: MoCo v3, DINO, SimMIM, MAE or a hybrid.

    Self-supervised, resumable after any interruption with --resume; --batch-size is global (all processes).
    Unset options take the config's defaults (--config FILE, then PretrainConfig).
    """
    from vitscope.api import pretrain as run_pretraining

    overrides: dict[str, Any] = load_config_file(config) if config else {}
    overrides.update({k: v for k, v in dict(
        method=method, model=model, data=data, epochs=epochs, batch_size=batch_size, lr=lr, lam=lam, mim=mim,
        out=out, save_every=save_every, compile=compile, local_attention=local_attention,
        num_images=num_images, seed=seed, device=device, precision=precision).items() if v is not None})
    overrides.update(parse_set(set_))
    run = run_pretraining(out=overrides.pop("out", PretrainConfig.out), resume=resume, progress=progress, **overrides)
    last = run.results["log"][-1]
    typer.echo(f"step {last['step']}: loss {last['loss']:.4f}, {last['img_per_s']:,.0f} img/s; run in {run.folder}")


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)

