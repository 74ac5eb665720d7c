"""``load(spec)`` → a timm ``VisionTransformer`` / ``Beit`` in eval mode.

Spec grammar (also printed by ``vitscope analyze --help``):

``timm:NAME``        timm model with its pretrained weights (downloaded by timm/HF hub),
                     e.g. ``timm:vit_base_patch16_224.mae``.
``random:NAME``      the same architecture with random (seeded) weights.
``zoo:NAME``         a model vitscope trained and ships (``vitscope zoo`` lists them),
                     its sha256 checked; see :mod:`vitscope.models.zoo`.
``hf:REPO_ID``       a Hugging Face ViT / ViT-MAE / DINOv2 checkpoint, converted to timm.
``PATH[@NAME]``      a checkpoint file; its format is detected from its keys (MoCo v3,
                     SimMIM, MAE, DINO, BEiT, timm state dict, ``.safetensors``, vitscope's
                     own; see ``vitscope.models.converters``). The architecture is inferred
                     from tensor shapes (``vitscope.models.architecture``); ``@NAME`` names
                     the timm architecture instead (needed for non-standard head counts).

Architecture keywords, one grammar wherever a timm name stands (``timm:``, ``random:``, ``@``):
``NAME(key=value, ...)`` passes Python literals to ``timm.create_model``, e.g.
``random:vit_tiny_patch4_32(depth=6)`` or ``ckpt.pt@vit_tiny_patch4_32(depth=6, num_heads=4)``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitscope.choices import SUPPORTED_SPECS
from vitscope.errors import VitscopeError
from vitscope.models.checkpoints import load_checkpoint
from vitscope.models.finite import check_finite_parameters
from vitscope.models.timm_factory import create_timm


@dataclass(frozen=True)
class Spec:
    """A parsed model spec: ``source`` is one of timm, random, hf, zoo, file."""

    source: str
    target: str
    arch: str | None = None

    def __str__(self) -> str:
        if self.source == "file":
            return self.target + (f"@{self.arch}" if self.arch else "")
        return f"{self.source}:{self.target}"


def parse_arch(arch: str) -> tuple[str, dict[str, Any]]:
    """``"NAME"`` → ``("NAME", {})``; ``"NAME(depth=6, num_heads=4)"`` → ``("NAME", {"depth": 6, "num_heads": 4})``:
    the keywords timm's ``create_model`` gets, each value a Python literal."""
    name, paren, rest = arch.partition("(")
    if not paren:
        return arch, {}
    bad = VitscopeError(f"architecture '{arch}': expected NAME(key=value, ...) with literal values, e.g. "
                        "vit_tiny_patch4_32(depth=6)")
    try:
        call = ast.parse(f"f({rest}", mode="eval").body
    except SyntaxError as e:
        raise bad from e
    if not name.strip() or not isinstance(call, ast.Call) or call.args or any(k.arg is None for k in call.keywords):
        raise bad
    try:
        return name.strip(), {k.arg: ast.literal_eval(k.value) for k in call.keywords}  # type: ignore[misc]
    except ValueError as e:
        raise bad from e


def parse_spec(spec: str) -> Spec:
    """Split a model spec into source and target; raise :class:`VitscopeError` if unknown."""
    spec = spec.strip()
    for source in ("timm", "random", "hf", "zoo"):
        if spec.startswith(source + ":"):
            target = spec[len(source) + 1 :]
            if not target:
                raise VitscopeError(f"model spec '{spec}' names no model after '{source}:'")
            if source in ("timm", "random"):
                parse_arch(target)  # a malformed keyword list is a one-line error here, not at load
            return Spec(source, target)
    path, _, arch = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if Path(path).is_file():
        parse_arch(arch)
        return Spec("file", path, arch or None)
    if Path(spec).is_file():
        return Spec("file", spec)
    raise VitscopeError(f"unknown model spec '{spec}': expected {SUPPORTED_SPECS}")


def load(spec: str, *, seed: int = 0) -> nn.Module:
    """Load any supported model spec as a timm ViT in eval mode (see module docstring).

    The returned model carries ``model.vitscope_spec`` (the spec string) so results can
    record where their numbers came from.
    """
    s = parse_spec(spec)
    if s.source in ("timm", "random"):
        if s.source == "random":
            torch.manual_seed(seed)
        name, kwargs = parse_arch(s.target)
        model = create_timm(name, pretrained=s.source == "timm", **kwargs)
    elif s.source == "hf":
        from vitscope.models.hf import load_hf

        model = load_hf(s.target)
    elif s.source == "zoo":
        from vitscope.models.zoo import load_zoo

        model = load_zoo(s.target)
    else:
        name, kwargs = parse_arch(s.arch) if s.arch else (None, {})
        model = load_checkpoint(Path(s.target), arch=name, arch_kwargs=kwargs)
    check_vit(model, f"'{spec}'")
    model.vitscope_spec = str(s)
    return model.eval()


def check_vit(model: nn.Module, name: str) -> None:
    """Raise :class:`VitscopeError` unless ``model`` is a ViT with finite weights (``name`` says which)."""
    if not isinstance(model, nn.Module) or not hasattr(model, "blocks"):
        raise VitscopeError(f"{name} is a {type(model).__name__}, not a Vision Transformer")
    check_finite_parameters(model, f"model {name}")


def as_vit(model: str | nn.Module, *, seed: int = 0) -> nn.Module:
    """A model spec loaded with :func:`load`, or a ViT already in memory checked (timm-like, finite
    weights) and put in eval mode; any other object is a :class:`VitscopeError`."""
    if isinstance(model, (str, Path)):
        return load(str(model), seed=seed)
    check_vit(model, f"the {type(model).__name__} given")
    return model.eval()


def spec_of(model: str | nn.Module) -> str:
    """What results record as a model's spec: the spec string, the spec a loaded model carries
    (``vitscope_spec``), or ``"<class> (in memory)"`` for a model built elsewhere."""
    if isinstance(model, (str, Path)):
        return str(model)
    return getattr(model, "vitscope_spec", None) or f"{type(model).__name__} (in memory)"
