"""Non-finite numbers (NaN, ±inf) in a model: found early and named by the block they sit in.

A NaN weight makes every later activation NaN and every metric meaningless (or a solver
fail to converge), so it is refused at load time, naming the parameter and its block. An
activation that overflows in a finite model (fp16 autocast, say) is caught after the forward
pass that produced it, naming the first stage whose output is not finite.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

from vitscope.errors import VitscopeError


def stage_of(parameter: str) -> str:
    """The part of a timm ViT a parameter belongs to: ``"blocks.3.attn.qkv.weight"`` → ``"block 3"``,
    ``"patch_embed.proj.weight"`` → ``"patch_embed"``."""
    m = re.match(r"blocks\.(\d+)\.", parameter)
    return f"block {m[1]}" if m else parameter.split(".")[0]


def check_finite_parameters(model: nn.Module, source: str) -> None:
    """Raise :class:`VitscopeError` naming the first parameter (in model order) with a NaN or inf."""
    for name, p in model.named_parameters():
        finite = torch.isfinite(p.detach())
        if not bool(finite.all()):
            bad = int(finite.numel() - finite.sum())
            raise VitscopeError(f"{source} has non-finite weights: {bad} NaN/inf value(s) in {name} "
                                f"({stage_of(name)}); the checkpoint is corrupt or its training diverged")


def first_nonfinite_stage(model: nn.Module, forward: Callable[[], object]) -> str:
    """Re-run ``forward`` with hooks on the patch embedding and every block of ``model``; return the
    first stage (``"patch_embed"``, ``"block i"``) whose output holds a NaN or inf, else ``"the final norm"``."""
    found: list[str] = []

    def watch(stage: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: object, out: object) -> None:
            if not found and isinstance(out, torch.Tensor) and not bool(torch.isfinite(out).all()):
                found.append(stage)
        return hook

    stages = [("patch_embed", model.patch_embed)] + [(f"block {i}", b) for i, b in enumerate(model.blocks)]
    handles = [module.register_forward_hook(watch(stage)) for stage, module in stages]
    try:
        forward()
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else "the final norm"


def check_finite_activations(model: nn.Module, features: torch.Tensor, forward: Callable[[], object]) -> None:
    """Raise :class:`VitscopeError` if ``features`` (the output of ``forward()``) is not finite, naming
    the first stage where it stops being so. Costs one reduction per batch when all is finite."""
    if not bool(torch.isfinite(features).all()):
        stage = first_nonfinite_stage(model, forward)
        raise VitscopeError(f"non-finite activations (NaN/inf): they first appear in the output of {stage}; "
                            f"try --precision fp32 or check the model's weights")


class FiniteChecked(nn.Module):
    """``module`` (a classifier around the ViT ``vit``) whose every output goes through
    :func:`check_finite_activations`, stages named in ``vit``."""

    def __init__(self, module: nn.Module, vit: nn.Module) -> None:
        super().__init__()
        self.module, self.vit = module, vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        check_finite_activations(self.vit, out, lambda: self.module(x))
        return out
