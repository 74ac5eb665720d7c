"""``load(spec)`` → a timm ``VisionTransformer`` / ``Beit`` in eval mode.

Spec grammar (also printed by ``vitscope analyze --help``):

``timm:NAME``        timm model with its pretrained weights (downloaded by timm/HF hub),
                     e.g. ``timm:vit_base_patch16_224.mae``.
``random:NAME``      the same architecture with random (seeded) weights.
``hf:REPO_ID``       a Hugging Face ViT / ViT-MAE / DINOv2 checkpoint, converted to timm.
``PATH[@NAME]``      a checkpoint file; its format is detected from its keys (MoCo v3,
                     SimMIM, MAE, DINO, BEiT, timm state dict, ``.safetensors``, vitscope's
                     own). ``@NAME`` names the timm architecture when the file does not
                     imply it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from vitscope.errors import VitscopeError

SUPPORTED_SPECS = (
    "timm:NAME (pretrained timm weights), random:NAME (random weights), "
    "hf:REPO_ID (Hugging Face ViT / ViT-MAE / DINOv2), or PATH[@NAME] to a checkpoint: "
    "MoCo v3, SimMIM, MAE, DINO, BEiT, timm state dict, .safetensors, vitscope's own"
)


@dataclass(frozen=True)
class Spec:
    """A parsed model spec: ``source`` is one of timm, random, hf, file."""

    source: str
    target: str
    arch: str | None = None

    def __str__(self) -> str:
        if self.source == "file":
            return self.target + (f"@{self.arch}" if self.arch else "")
        return f"{self.source}:{self.target}"


def parse_spec(spec: str) -> Spec:
    """Split a model spec into source and target; raise :class:`VitscopeError` if unknown."""
    spec = spec.strip()
    for source in ("timm", "random", "hf"):
        if spec.startswith(source + ":"):
            target = spec[len(source) + 1 :]
            if not target:
                raise VitscopeError(f"model spec '{spec}' names no model after '{source}:'")
            return Spec(source, target)
    path, _, arch = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if Path(path).is_file():
        return Spec("file", path, arch or None)
    if Path(spec).is_file():
        return Spec("file", spec)
    raise VitscopeError(f"unknown model spec '{spec}': expected {SUPPORTED_SPECS}")


def create_timm(name: str, *, pretrained: bool, **kwargs: object) -> nn.Module:
    """``timm.create_model`` with a one-line error for an unknown name or failed download."""
    base = name.split(".")[0]
    if not timm.list_models(base) and base not in timm.list_models():
        raise VitscopeError(f"timm has no model '{name}' (see `timm.list_models('vit_*')`)")
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError, ValueError) as e:  # hub unreachable, bad tag, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VitscopeError(f"could not create timm model '{name}' (pretrained={pretrained}): {first}") from e


def load(spec: str, *, seed: int = 0) -> nn.Module:
    """Load any supported model spec as a timm ViT in eval mode (see module docstring).

    The returned model carries ``model.vitscope_spec`` (the spec string) so results can
    record where their numbers came from.
    """
    s = parse_spec(spec)
    if s.source in ("timm", "random"):
        if s.source == "random":
            torch.manual_seed(seed)
        model = create_timm(s.target, pretrained=s.source == "timm")
    elif s.source == "hf":
        from vitscope.models.hf import load_hf

        model = load_hf(s.target)
    else:
        from vitscope.models.checkpoints import load_checkpoint

        model = load_checkpoint(Path(s.target), arch=s.arch)
    if not hasattr(model, "blocks"):
        raise VitscopeError(f"'{spec}' is a {type(model).__name__}, not a Vision Transformer")
    model.vitscope_spec = str(s)
    return model.eval()
