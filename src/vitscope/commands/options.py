"""The options every command that runs a model shares, defined once.

``--device``, ``--precision`` (where the command has a choice of autocast), ``--batch-size``,
``--progress/--no-progress`` and ``--seed`` mean the same everywhere; a command gives them its
own defaults. Use the ``Annotated`` aliases (``device: Device = "auto"``), or the option itself
with another type where a command layers its settings (``Annotated[Optional[str], DEVICE]``).
"""

from __future__ import annotations

from typing import Annotated

import typer

DEVICE = typer.Option("--device", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
PRECISION = typer.Option("--precision", help="autocast of the forward pass: fp32, bf16, ... (a wrong value "
                                             "lists the command's choices)")
BATCH_SIZE = typer.Option("--batch-size", help="images per batch")
PROGRESS = typer.Option("--progress/--no-progress", help="show progress bars on stderr")
SEED = typer.Option("--seed", help="seed of everything random: image subsets, random weights, training")

Device = Annotated[str, DEVICE]
Precision = Annotated[str, PRECISION]
BatchSize = Annotated[int, BATCH_SIZE]
Progress = Annotated[bool, PROGRESS]
Seed = Annotated[int, SEED]
