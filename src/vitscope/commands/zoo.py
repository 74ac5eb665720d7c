"""``vitscope zoo``: the models vitscope trained and ships (``zoo:NAME``); ``zoo add`` adds one."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Annotated, Optional

import typer

zoo_app = typer.Typer(help="Shipped models (zoo:NAME); `vitscope zoo add` adds one.",
                      invoke_without_command=True, no_args_is_help=False)


def machine() -> str:
    """This machine in words: CPU model and core count, or the GPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"1× {torch.cuda.get_device_name()}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU: {cpu}, {os.cpu_count()} cores"


@zoo_app.callback()
def _list(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from vitscope.zoo_manifest import describe, manifest, zoo_dir  # no torch: listing stays fast

    models = manifest()
    if not models:
        typer.echo(f"no zoo models in {zoo_dir()}")
    for name, e in models.items():
        typer.echo(describe(name, e))
        typer.echo(f"    {e.get('hardware', '?')}, {e.get('training', {}).get('wall_seconds', 0) / 60:.0f} min; "
                   f"{e['bytes'] / 1e6:.1f} MB fp16; sha256 {e['sha256'][:12]}…")


@zoo_app.command("add", help="Add a `vitscope pretrain` run, or a `vitscope finetune` run of a zoo model, to the zoo "
                              "as NAME (the encoder as fp16 safetensors + a manifest line).")
def _add(
    name: Annotated[str, typer.Argument(help="zoo name, e.g. moco-cifar10")],
    run: Annotated[Path, typer.Option(help="pretraining run folder (checkpoint.pt, config.json, log.jsonl) or fine-tuning "
                                               "folder (checkpoint.pt, finetune.json)")],
    data: Annotated[str, typer.Option(help="what it was trained on, in words")] = "CIFAR-10 train (50,000 images)",
    probe: Annotated[Optional[Path], typer.Option(help="`vitscope probe` folder of this model (probe.json)")] = None,
    budget: Annotated[str, typer.Option(help="training budget in words, e.g. 'CPU, about 1 h'")] = "",
    hardware: Annotated[Optional[str], typer.Option(help="where it trained [default: this machine]")] = None,
    note: Annotated[str, typer.Option(help="free text for the manifest")] = "",
    zoo_dir: Annotated[Optional[Path], typer.Option(help="zoo folder [default: $VITSCOPE_ZOO or the package's]")] = None,
) -> None:
    from vitscope.models.zoo import add_entry
    from vitscope.zoo_manifest import describe

    e = add_entry(name, run, probe=probe, hardware=hardware or machine(), budget=budget, data=data,
                  folder=zoo_dir, note=note)
    typer.echo(describe(name, e))


def register(app: typer.Typer) -> None:
    app.add_typer(zoo_app, name="zoo")
