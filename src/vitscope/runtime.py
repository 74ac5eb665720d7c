"""Where and how models run: device choice, autocast precision, torchrun process groups."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Subset

from vitscope.errors import VitscopeError

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None → CUDA when available, else CPU; anything else must be a valid device."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise VitscopeError(f"unknown device '{device}'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VitscopeError(f"device '{device}' asked for, but no CUDA GPU is available")
    return dev


def init_distributed(device: str | None) -> tuple[int, int, torch.device]:
    """Join the process group a ``torchrun`` launch describes; return ``(rank, world, device)``.

    Without ``torchrun`` (no ``WORLD_SIZE``) this is ``(0, 1, resolve_device(device))``.
    Each process takes GPU ``LOCAL_RANK`` when CUDA is used (NCCL), else the CPU (gloo).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, resolve_device(device)
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), dev


def shard(ds: Dataset, rank: int, world: int) -> Dataset:
    """Every ``world``-th item starting at ``rank``: disjoint shards, no padding, no duplicates."""
    return ds if world == 1 else Subset(ds, list(range(rank, len(ds), world)))  # type: ignore[arg-type]


def shard_batches(ds: Dataset, batch_size: int, rank: int, world: int) -> Dataset:
    """Whole batches dealt round-robin: batch ``b`` of the one-process order goes to rank ``b % world``.

    A loader with the same ``batch_size`` over the shard then yields exactly the batches
    one process would have seen, so estimators that depend on how images are grouped
    (minibatch CKA) give the one-process value.
    """
    if world == 1:
        return ds
    n = len(ds)  # type: ignore[arg-type]
    idx = [i for b in range(rank, -(-n // batch_size), world)
           for i in range(b * batch_size, min(n, (b + 1) * batch_size))]
    return Subset(ds, idx)


def distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast context for ``precision`` (fp32 = none)."""
    if precision not in PRECISIONS:
        raise VitscopeError(f"unknown precision '{precision}'. Valid options are: {list(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
