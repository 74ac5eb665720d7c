"""Process group set-up and the collectives the objectives use (DDP via ``torchrun``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Dist:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1 (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 parts (loss logits, BN statistics)
        torch.backends.cudnn.allow_tf32 = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local, dev)


def teardown() -> None:
    """Leave the process group once every process got here (a barrier, then destroy). A process that
    exits with its gloo/NCCL threads still alive can abort ("terminate called without an active
    exception", SIGABRT) while a slower peer is still writing its files, and fail the whole run."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@torch.no_grad()
def gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` [n, ...] from every process along dim 0 (no gradient; MoCo's keys)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def sum_over_processes(x: torch.Tensor) -> torch.Tensor:
    """Sum a (detached) tensor over processes (Sinkhorn–Knopp's global normalisers)."""
    if world_size() == 1:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x


def mean_over_processes(x: torch.Tensor) -> torch.Tensor:
    """Average a (detached) tensor over processes (logged values, DINO's centre)."""
    return sum_over_processes(x) / world_size()


class SyncBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over the global batch of all processes, differentiably (SyncBatchNorm semantics).

    ``torch.nn.SyncBatchNorm`` runs on CUDA only; this one sums Σx, Σx² and the count with
    ``torch.distributed.nn.functional.all_reduce`` (whose backward all-reduces the
    gradients) so gloo on CPU and NCCL on GPU give the statistics of the whole batch, as
    MoCo v3 does by converting its model with ``SyncBatchNorm``. One process: plain BN.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        x = x.float()  # statistics in fp32 also under bf16 autocast
        stats = torch.cat([x.sum(0), (x * x).sum(0), x.new_full((1,), x.shape[0])])
        stats = dist_fn.all_reduce(stats)
        d = x.shape[1]
        n = stats[-1]
        mean = stats[:d] / n
        var = stats[d:2 * d] / n - mean * mean
        with torch.no_grad():
            if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1), m)
                self.num_batches_tracked.add_(1)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y


__all__ = ["Dist", "SyncBatchNorm1d", "gather_cat", "get_rank", "mean_over_processes", "setup",
           "sum_over_processes", "world_size"]
