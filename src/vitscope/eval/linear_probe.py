"""Linear probes on frozen features, one per block, all trained together.

The probe of block ``l`` is MAE's linear-probe head: a BatchNorm without affine
parameters (``eps = 1e-6``) followed by a linear layer, ``logits_l = W_l·BN_l(x_l) + b_l``.
The ``L`` probes live in one module with weights ``[L, D, C]`` and are trained on
``[B, L, D]`` batches with the loss ``Σ_l CE(logits_l, y)``. Every parameter belongs to
exactly one block and BatchNorm normalises every (block, channel) column on its own, so
with an element-wise optimiser (SGD with momentum, AdamW) each block's probe follows
exactly the trajectory it would follow trained alone (tested). LARS, MAE's optimiser,
is not used: its trust ratio couples all entries of a weight tensor.

Defaults: SGD, momentum 0.9, ``lr = 0.1 × batch / 256`` (MAE's base lr and scaling rule),
no weight decay, cosine schedule to 0 without warm-up, 50 epochs (Park et al. Table A.1:
SGD, cosine, no warm-up, 50 epochs). The accuracy reported is that of the final epoch,
never the best one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vitscope.choices import PROBE_OPTIMIZERS
from vitscope.errors import VitscopeError
from vitscope.models.classifier import PROBE_FORMAT
from vitscope.results import atomic_torch_save
from vitscope.schedule import warmup_cosine

BASE_LR = {"sgd": 0.1, "adamw": 1e-3}
BN_EPS = 1e-6


class LayerwiseLinearProbe(nn.Module):
    """``x [B, L, D] → logits [B, L, C]``: per block, BatchNorm (no affine) then linear."""

    def __init__(self, num_layers: int, dim: int, num_classes: int, eps: float = BN_EPS) -> None:
        super().__init__()
        self.num_layers, self.dim, self.num_classes = num_layers, dim, num_classes
        self.bn = nn.BatchNorm1d(num_layers * dim, affine=False, eps=eps)
        self.weight = nn.Parameter(torch.empty(num_layers, dim, num_classes))
        self.bias = nn.Parameter(torch.zeros(num_layers, num_classes))
        nn.init.trunc_normal_(self.weight, std=0.01)  # MAE: trunc_normal_(head.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = self.bn(x.reshape(b, self.num_layers * self.dim)).reshape(b, self.num_layers, self.dim)
        return torch.einsum("bld,ldc->blc", x, self.weight) + self.bias

    def export(self, layer: int) -> dict[str, torch.Tensor | float]:
        """Block ``layer``'s probe in the probe-file layout (``bn_mean``, ``weight [C, D]``, ...)."""
        sl = slice(layer * self.dim, (layer + 1) * self.dim)
        return {
            "bn_mean": self.bn.running_mean[sl].detach().cpu().clone(),  # type: ignore[index]
            "bn_var": self.bn.running_var[sl].detach().cpu().clone(),  # type: ignore[index]
            "bn_eps": float(self.bn.eps),
            "weight": self.weight[layer].detach().T.cpu().contiguous(),
            "bias": self.bias[layer].detach().cpu().clone(),
        }


@dataclass
class ProbeTraining:
    """How the probes are trained (module docstring gives the defaults' sources)."""

    epochs: int = 50
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float | None = None  # None: BASE_LR[optimizer] × batch_size / 256
    weight_decay: float = 0.0
    momentum: float = 0.9
    warmup_epochs: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in PROBE_OPTIMIZERS:
            raise VitscopeError(f"unknown probe optimizer '{self.optimizer}'. Valid options are: {list(PROBE_OPTIMIZERS)}")
        if self.epochs < 1 or self.batch_size < 2:
            raise VitscopeError(f"probe needs epochs ≥ 1 and batch size ≥ 2, got {self.epochs}, {self.batch_size}")
        if (self.lr is not None and not self.lr > 0) or self.weight_decay < 0:
            raise VitscopeError(f"--lr must be > 0 and --weight-decay ≥ 0, got {self.lr}, {self.weight_decay}")

    @property
    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else BASE_LR[self.optimizer] * self.batch_size / 256


def _batch(feats: np.ndarray, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(feats[np.sort(idx)], dtype=np.float32)).to(device)


def _optimizer(params: list[nn.Parameter], cfg: ProbeTraining) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.resolved_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.resolved_lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def predict(probe: LayerwiseLinearProbe, feats: np.ndarray, batch_size: int = 1024) -> torch.Tensor:
    """Logits ``[N, L, C]`` (on CPU) of ``feats`` ``[N, L, D]``, BatchNorm in eval mode."""
    probe.eval()
    device = probe.weight.device
    out = [probe(torch.from_numpy(np.asarray(feats[i:i + batch_size], dtype=np.float32)).to(device)).cpu()
           for i in range(0, len(feats), batch_size)]
    return torch.cat(out)


def accuracy_per_layer(probe: LayerwiseLinearProbe, feats: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Top-1 accuracy ``[L]`` of every block's probe."""
    pred = predict(probe, feats).argmax(-1)
    return (pred == torch.as_tensor(labels)[:, None]).float().mean(0).numpy()


def train_probe(probe: LayerwiseLinearProbe, feats: np.ndarray, labels: np.ndarray, cfg: ProbeTraining,
                val: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict]:
    """Train ``probe`` in place on ``feats`` ``[N, L, D]``; one history entry per epoch.

    Batches are drawn by a generator seeded with ``cfg.seed`` (same order whatever ``L``);
    the last incomplete batch is dropped when ``N`` exceeds the batch size (MAE's
    ``drop_last``). Each entry holds the mean training loss per block and, when ``val``
    is given, the validation accuracy per block after that epoch.
    """
    device = probe.weight.device
    n = len(labels)
    if n < 2:
        raise VitscopeError(f"a linear probe needs at least 2 training images, got {n}")
    bs = min(cfg.batch_size, n)
    steps_per_epoch = n // bs
    total = cfg.epochs * steps_per_epoch
    opt = _optimizer([probe.weight, probe.bias], cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    history: list[dict] = []
    step = 0
    for epoch in range(cfg.epochs):
        probe.train()
        perm = torch.randperm(n, generator=gen).numpy()
        loss_sum = torch.zeros(probe.num_layers)
        for s in range(steps_per_epoch):
            idx = np.sort(perm[s * bs:(s + 1) * bs])
            lr = warmup_cosine(step, total, cfg.warmup_epochs * steps_per_epoch, cfg.resolved_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = _batch(feats, idx, device), y_all[idx].to(device)
            logits = probe(x)  # [B, L, C]
            per_layer = F.cross_entropy(logits.permute(0, 2, 1), y[:, None].expand(-1, probe.num_layers),
                                        reduction="none").mean(0)
            opt.zero_grad(set_to_none=True)
            per_layer.sum().backward()
            opt.step()
            loss_sum += per_layer.detach().cpu()
            step += 1
        entry: dict = {"epoch": epoch + 1, "train_loss": (loss_sum / steps_per_epoch).tolist()}
        if val is not None:
            entry["val_accuracy"] = accuracy_per_layer(probe, *val).tolist()
        history.append(entry)
    probe.eval()
    return history


def fit_probes(train_feats: np.ndarray, train_labels: np.ndarray, val_feats: np.ndarray, val_labels: np.ndarray,
               num_classes: int, cfg: ProbeTraining, device: torch.device | str = "cpu"
               ) -> tuple[LayerwiseLinearProbe, dict]:
    """Train one probe per block on ``[N, L, D]`` features; report the final epoch's accuracy.

    Returns the probe and ``{"accuracy": [L] (val, final epoch), "train_accuracy": [L],
    "history": [...], "config": {...}}``.
    """
    torch.manual_seed(cfg.seed)
    probe = LayerwiseLinearProbe(train_feats.shape[1], train_feats.shape[2], num_classes).to(device)
    history = train_probe(probe, train_feats, train_labels, cfg, val=(val_feats, val_labels))
    return probe, {
        "accuracy": history[-1]["val_accuracy"],
        "train_accuracy": accuracy_per_layer(probe, train_feats, train_labels).tolist(),
        "history": history,
        "config": {**asdict(cfg), "lr": cfg.resolved_lr},
    }


def probe_file(probe: LayerwiseLinearProbe, layer: int, *, model_spec: str, feature: str,
               model_layer: int, classes: list[str]) -> dict:
    """The probe file (format in :mod:`vitscope.models.classifier`) of block ``layer`` of ``probe``.

    ``model_layer`` is the block of the model the probe reads (``-1``: final features).
    """
    return {"format": PROBE_FORMAT, "version": 1, "model": model_spec, "feature": feature,
            "layer": int(model_layer), "classes": list(classes), **probe.export(layer)}


def save_probe(path: Path, state: dict) -> None:
    """Write a probe file atomically."""
    atomic_torch_save(state, Path(path))
