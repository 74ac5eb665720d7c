"""Checkpoints that survive faults, in vitscope's own format.

``save(path, state)`` writes to a temporary file in the same folder, fsyncs it, renames
it over ``path`` with ``os.replace`` (atomic on POSIX) and fsyncs the folder, so a
SIGKILL at any moment leaves either the previous checkpoint or the new one, never half of
one. The file is vitscope's format (``format``, ``version``, ``arch``, ``arch_kwargs``,
``model`` = encoder state dict in timm's key layout) plus the training state
(``objective`` with heads and momentum encoder, ``optimizer``, ``epoch``, ``step``,
``rng``, ``config``); everything is plain tensors / numbers / strings so it loads with
``torch.load(weights_only=True)`` and ``vitscope.models.load(path)`` gives the encoder.

Snapshots (``snapshot_every``) are the encoder alone along a run, ``snapshots/step-NNNNNN.safetensors``:
fp16 weights (the network ``vitscope.load`` takes from the run's checkpoint: a DINO run's teacher)
with the architecture, method, step and epoch in the file's metadata, so ``vitscope.load(path)``
builds it; written atomically, as the checkpoint is.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitscope.errors import VitscopeError
from vitscope.models.checkpoints import encoder_safetensors
from vitscope.results import atomic_torch_save, write_atomic

FORMAT = "vitscope-checkpoint"
VERSION = 1
SNAPSHOTS = "snapshots"  # the folder of a run that holds its snapshots
SNAPSHOT_FORMAT = "vitscope-snapshot"


def snapshot_path(out: Path, step: int) -> Path:
    """Where the snapshot after ``step`` steps of the run in ``out`` goes."""
    return out / SNAPSHOTS / f"step-{step:06d}.safetensors"


def save_snapshot(path: Path, weights: dict[str, torch.Tensor], arch: str, arch_kwargs: dict[str, Any], *,
                  method: str, step: int, epoch: float) -> None:
    """Write the encoder ``weights`` as an fp16 ``.safetensors`` snapshot at ``path``, atomically."""
    write_atomic(path, encoder_safetensors(weights, arch, arch_kwargs, format=SNAPSHOT_FORMAT, method=method,
                                           step=str(step), epoch=f"{epoch:.6g}"))


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file + fsync + os.replace + fsync of the folder)."""
    atomic_torch_save({"format": FORMAT, "version": VERSION, **state}, path)


def load(path: Path) -> dict[str, Any]:
    """Read a vitscope checkpoint (``weights_only``); raise :class:`VitscopeError` if it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise VitscopeError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise VitscopeError(f"{path} is not a vitscope checkpoint")
    if state.get("version") != VERSION:
        raise VitscopeError(f"{path} has checkpoint version {state.get('version')}; this vitscope reads {VERSION}")
    return state


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as weights-only-loadable values."""
    py = random.getstate()
    np_name, np_keys, np_pos, np_gauss, np_cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_gauss), "cached": float(np_cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
