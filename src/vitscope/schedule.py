"""Learning-rate schedule shared by pretraining, the linear probe and fine-tuning."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then half-cosine decay to ``min_lr``.

    ``lr(t) = base·t/W`` for ``t < W``, else
    ``min + (base − min)·½(1 + cos(π·(t − W)/(T − W)))`` (MAE's ``adjust_learning_rate``,
    per iteration; Park et al. Table A.1: cosine schedule, linear warm-up).
    """
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
