"""Streaming accumulators in the torchmetrics shape: ``update`` per tap, ``compute`` once.

States are tensors that only ever get *summed* (sums, counts, scatter matrices), so a
data set of 50,000 images costs the same memory as 500, batch-by-batch streaming equals
a one-shot pass, and a multi-process run merges by ``all_reduce(SUM)`` (:meth:`sync`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from vitscope.taps import ViTInfo


class StreamingMetric:
    """Base class: subclasses set ``name``/``taps``, register states, implement update/compute."""

    name: str = ""
    taps: tuple[str, ...] = ()
    compilable: bool = False  # True: the constructor takes ``compile`` (torch.compile of the hot reduction)

    def __init__(self, info: ViTInfo, device: torch.device | str = "cpu") -> None:
        self.info = info
        self.device = torch.device(device)
        self._states: dict[str, torch.Tensor] = {}

    def add_state(self, name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float64) -> torch.Tensor:
        t = torch.zeros(shape, dtype=dtype, device=self.device)
        self._states[name] = t
        return t

    def state(self, name: str) -> torch.Tensor:
        return self._states[name]

    def expect_images(self, n: int) -> None:
        """Told before streaming how many images this process will see, where that is known
        (``run_metrics``); a metric that samples images spreads its sample with it."""

    def update(self, layer: int, tap: str, x: torch.Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def sync(self) -> None:
        """Sum every state over all processes of the default group (no-op when not distributed)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for t in self._states.values():
                dist.all_reduce(t, op=dist.ReduceOp.SUM)

    def state_memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._states.values())
