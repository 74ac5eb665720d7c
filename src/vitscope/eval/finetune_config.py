"""The fine-tuning recipe's settings (:mod:`vitscope.eval.finetune` gives their source: Park et al.
Table A.1, after SimMIM), checked on construction. Standard library only, so the command line
offers them as defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from vitscope.errors import VitscopeError


@dataclass
class FinetuneConfig:
    """Fine-tuning hyper-parameters; the defaults are the recipe of :mod:`vitscope.eval.finetune`."""

    epochs: int = 100
    batch_size: int = 128
    lr: float | None = None  # None: 1.25e-3 × batch_size / 512
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    layer_decay: float = 0.65
    warmup_epochs: int = 5
    mixup: float = 0.8
    cutmix: float = 1.0
    smoothing: float = 0.1
    drop_path: float = 0.1
    clip_grad: float = 5.0
    randaug: str = "rand-m9-mstd0.5-inc1"
    reinit: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise VitscopeError(f"fine-tuning needs epochs ≥ 1 and batch size ≥ 2, got {self.epochs}, {self.batch_size}")
        if not 0 < self.layer_decay <= 1:
            raise VitscopeError(f"layer decay must be in (0, 1], got {self.layer_decay}")
        if not 0 <= self.drop_path < 1 or not 0 <= self.smoothing < 1:
            raise VitscopeError(f"drop path and smoothing must be in [0, 1), got {self.drop_path}, {self.smoothing}")
        if self.mixup < 0 or self.cutmix < 0:
            raise VitscopeError(f"mixup and cutmix alphas must be ≥ 0, got {self.mixup}, {self.cutmix}")
        if (self.lr is not None and not self.lr > 0) or self.weight_decay < 0:
            raise VitscopeError(f"--lr must be > 0 and --weight-decay ≥ 0, got {self.lr}, {self.weight_decay}")

    @property
    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else 1.25e-3 * self.batch_size / 512

    @property
    def mixing(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0
