"""The one-pass analysis engine behind ``vitscope analyze``.

images ──► DataLoader ──► model (eval, autocast) ──► taps ──► metric accumulators
                                                               └─ compute() once ─► results.json

One forward pass feeds every selected metric; only the taps they need are hooked, and
each metric reduces its tensors inside the hook, layer by layer.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from vitscope.capture import Taps, needed_taps, vit_info
from vitscope.data import SkipLog, iterate
from vitscope.errors import VitscopeError
from vitscope.metrics.attention import AttentionStats
from vitscope.metrics.base import StreamingMetric
from vitscope.metrics.fourier import FourierStats
from vitscope.metrics.similarity import SimilarityStats
from vitscope.metrics.spectrum import SpectrumStats

METRICS: dict[str, type[StreamingMetric]] = {
    m.name: m for m in (AttentionStats, SimilarityStats, SpectrumStats, FourierStats)
}
PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(device: str | None) -> torch.device:
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


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast context for ``precision`` (fp32 = none)."""
    if precision not in PRECISIONS:
        raise VitscopeError(f"unknown precision '{precision}'. Valid options are: {list(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def build_metrics(names: Iterable[str], model: nn.Module, device: torch.device) -> list[StreamingMetric]:
    """Instantiate the named metrics for ``model``'s token layout."""
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise VitscopeError(f"unknown metrics {unknown}. Valid options are: {list(METRICS)}")
    info = vit_info(model)
    try:
        return [METRICS[n](info, device) for n in names]
    except ValueError as e:
        raise VitscopeError(str(e)) from e


def run_metrics(
    model: nn.Module,
    loader: Iterable[Any],
    metrics: Sequence[StreamingMetric],
    *,
    device: torch.device,
    precision: str = "fp32",
    progress: bool = True,
    skips: SkipLog | None = None,
) -> dict[str, Any]:
    """Stream ``loader`` through ``model`` once, feeding every metric; return their results.

    Returns ``{"metrics": {name: result}, "images": n, "skipped": [...], "seconds": t}``.
    """
    skips = skips if skips is not None else SkipLog()
    model = model.to(device).eval()
    by_tap: dict[str, list[StreamingMetric]] = {}
    for m in metrics:
        for t in m.taps:
            by_tap.setdefault(t, []).append(m)

    def dispatch(layer: int, tap: str, x: torch.Tensor) -> None:
        for m in by_tap[tap]:
            m.update(layer, tap, x)

    n, t0 = 0, time.perf_counter()
    bar = tqdm(total=getattr(loader, "num_images", None), unit="img", disable=not progress,
               desc="analyze", dynamic_ncols=True)
    with Taps(model, needed_taps(metrics), dispatch) as taps, torch.inference_mode():
        for batch in iterate(loader, skips):
            images = batch.images.to(device, non_blocking=True)
            with autocast(device, precision):
                model.forward_features(images)
            taps.check()
            n += len(images)
            bar.update(len(images))
            bar.set_postfix(skipped=skips.count)
    bar.close()
    skipped = list(skips.messages)
    if _distributed():  # every rank reaches here, so the collectives cannot hang
        count = torch.tensor([n], dtype=torch.long, device=device)
        dist.all_reduce(count)
        n = int(count.item())
        gathered: list[list[str]] = [[] for _ in range(dist.get_world_size())]
        dist.all_gather_object(gathered, skipped)
        skipped = [msg for part in gathered for msg in part]
    if n == 0:
        raise VitscopeError(f"no readable images ({len(skipped)} skipped)")
    for m in metrics:
        m.sync()
    return {
        "metrics": {m.name: m.compute() for m in metrics},
        "images": n,
        "skipped": skipped,
        "seconds": time.perf_counter() - t0,
    }


def model_summary(model: nn.Module) -> dict[str, Any]:
    """Spec, class and token layout of a model, for the results file."""
    return {"spec": getattr(model, "vitscope_spec", None), "class": type(model).__name__,
            **asdict(vit_info(model))}
