"""Where and how models run: device choice, autocast precision, torchrun process groups, compiled kernels."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Subset

from vitscope.errors import VitscopeError

PRECISIONS = ("fp32", "bf16", "fp16")

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable)


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


def compiled(fn: F, enabled: bool = True) -> F:
    """``torch.compile(fn)`` that falls back to ``fn`` itself when compilation fails.

    Inductor fuses a chain of elementwise ops and reductions into one loop over memory
    (C++/OpenMP on the CPU, which needs a C++ compiler; Triton on a GPU). It compiles at
    the first call, and again for new shapes (dynamic after the second); the kernels are
    cached on disk between runs. Should a call fail to compile (no compiler, an unsupported
    op), a warning names the reason and that call and every later one run ``fn`` eagerly;
    an error of ``fn`` itself is raised as without compiling. Results agree with eager
    ones up to float rounding. ``enabled=False`` returns ``fn`` unchanged.
    """
    if not enabled:
        return fn
    fast = torch.compile(fn)
    state = {"ok": True}  # False once compiling failed

    def call(*args, **kwargs):
        if state["ok"]:
            try:
                return fast(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - sorted out below by the eager call
                out = fn(*args, **kwargs)  # an error of fn itself raises here, as it would uncompiled
                state["ok"] = False
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                log.warning("torch.compile of %s failed, running it eagerly: %s", fn.__name__, reason)
                return out
        return fn(*args, **kwargs)

    return call  # type: ignore[return-value]
