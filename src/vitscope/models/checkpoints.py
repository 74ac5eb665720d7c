"""``PATH[@ARCH]`` → a timm ViT: read a checkpoint file safely, detect its format, convert, load strictly.

Reading never runs pickled code: ``torch.load(..., weights_only=True)`` (tensors, numbers,
strings, lists, dicts). Two harmless containers that training scripts store next to the
weights are admitted as plain data: ``argparse.Namespace`` (MAE, DINO, BEiT ``args``) and
yacs' ``CfgNode`` (SimMIM ``config``), read as an ``OrderedDict`` without importing yacs.
Anything else that needs unpickling is refused with a one-line :class:`VitscopeError`.

Loading is strict: after the format's documented drops (:mod:`vitscope.models.converters`)
every key of the file must be a parameter of the model and every parameter must be in the
file, with the same shape.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from timm.data import DEFAULT_CROP_PCT
from torch import nn

from vitscope.errors import VitscopeError
from vitscope.models.architecture import head_kwargs_for_arch, infer_kwargs
from vitscope.models.converters import FORMATS, STANDARD_HEADS, StateDict, detect_format
from vitscope.models.timm_factory import create_timm, first_line

# (object, fully qualified name) pairs the weights-only unpickler may build; both are
# plain attribute/key containers whose unpickling calls no user code.
SAFE_CONTAINERS = [argparse.Namespace, (OrderedDict, "yacs.config.CfgNode")]


def looks_like_torch_save(path: Path) -> bool:
    """Whether ``path`` starts like a ``torch.save`` file: a zip archive (torch ≥ 1.6; a torn one
    still starts with ``PK``) or, in the legacy format, a pickle stream (opcode PROTO, ``0x80``,
    then protocol 2–5)."""
    with open(path, "rb") as f:
        head = f.read(2)
    return head == b"PK" or (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def read_checkpoint(path: Path) -> Mapping[str, Any]:
    """The dict saved in ``path`` (``.safetensors`` or ``torch.save``), without running pickled code."""
    if path.stat().st_size == 0:
        raise VitscopeError(f"checkpoint '{path}' is an empty file")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise VitscopeError(f"checkpoint '{path}' is not a readable .safetensors file: {first_line(e)}") from e
    if not looks_like_torch_save(path):
        raise VitscopeError(f"'{path}' is not a checkpoint: neither a torch.save file (a zip archive or a "
                            f"pickle stream) nor .safetensors")
    try:
        with torch.serialization.safe_globals(SAFE_CONTAINERS), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on pickle protocols > 2
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is a paragraph; name the refused object (or the refused operation).
        refused = re.search(r"GLOBAL ([\w.]+)", str(e))
        if refused:
            raise VitscopeError(
                f"checkpoint '{path}' needs arbitrary Python objects to unpickle (GLOBAL {refused.group(1)}), "
                f"which vitscope refuses (torch.load weights_only=True); re-save its state dict") from e
        operation = [line.strip() for line in str(e).splitlines() if re.search(r"[Uu]nsupported|Can only", line)]
        raise VitscopeError(
            f"checkpoint '{path}' is not a pickle that torch.load(weights_only=True) can read "
            f"({(operation or [first_line(e)])[0]}); re-save its state dict with torch.save") from e
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise VitscopeError(f"checkpoint '{path}' is not a readable PyTorch checkpoint: {first_line(e)}") from e
    if not isinstance(obj, Mapping):
        raise VitscopeError(f"checkpoint '{path}' holds a {type(obj).__name__}, not a dict of weights")
    return obj


def _keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:5])
    return shown + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")


def load_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state_dict`` into ``model``; any missing, unexpected or mis-shaped key is an error."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items() if k in state_dict and state_dict[k].shape != v.shape]
    problems = []
    if shapes:
        problems.append(f"shape mismatch: {_keys(shapes)}")
    if missing:
        problems.append(f"missing keys: {_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_keys(unexpected)}")
    if problems:
        raise VitscopeError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)


def set_data_config(model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """Give a model built from kwargs the preprocessing timm's data config reads."""
    model.pretrained_cfg = dict(
        input_size=(model.patch_embed.proj.in_channels, *model.patch_embed.img_size),
        interpolation="bicubic", crop_pct=DEFAULT_CROP_PCT, crop_mode="center",
        mean=tuple(mean), std=tuple(std), num_classes=getattr(model, "num_classes", 0),
        first_conv="patch_embed.proj", classifier="head",
    )


def build_for(state_dict: StateDict, arch: str | None, source: str,
              heads: Mapping[int, int] = STANDARD_HEADS, arch_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """The timm model ``state_dict`` describes (or timm's ``arch`` with the file's head and
    ``arch_kwargs``), loaded."""
    if arch:
        model = create_timm(arch, pretrained=False, **{**head_kwargs_for_arch(state_dict), **(arch_kwargs or {})})
    else:
        try:
            cls, kwargs = infer_kwargs(state_dict, heads)
        except VitscopeError as e:
            raise VitscopeError(f"{source}: {e}") from e
        try:
            model = cls(**kwargs)
        except (TypeError, ValueError, AssertionError, RuntimeError) as e:
            raise VitscopeError(f"{source}: no timm {cls.__name__} fits the inferred {kwargs}: {first_line(e)}") from e
    load_strict(model, state_dict, source)
    return model


#: Where a vitscope DINO checkpoint keeps its teacher's ViT (the objective's state dict).
DINO_TEACHER_PREFIX = "teacher.vit."


def evaluated_encoder(checkpoint: Mapping[str, Any]) -> Any:
    """The encoder weights of a vitscope checkpoint that evaluations use: its ``model`` (the trained
    encoder), except for a DINO pretraining run, whose teacher, the EMA of the student, is the
    network DINO evaluates and releases (the official ``eval_knn.py`` / ``eval_linear.py`` read
    ``--checkpoint_key teacher``; Caron et al. Sec. 5.2, Fig. 6: the teacher outperforms the
    student throughout training)."""
    config = checkpoint.get("config")
    objective = checkpoint.get("objective")
    if isinstance(config, Mapping) and config.get("method") == "dino" and isinstance(objective, Mapping):
        teacher = {k.removeprefix(DINO_TEACHER_PREFIX): v for k, v in objective.items()
                   if k.startswith(DINO_TEACHER_PREFIX)}
        if teacher:
            return teacher
    return checkpoint.get("model")


def encoder_safetensors(weights: Mapping[str, torch.Tensor], arch: str, arch_kwargs: Mapping[str, Any],
                        **metadata: str) -> bytes:
    """An encoder as the bytes of an fp16 ``.safetensors`` file (a classifier head ``head.*`` left out)
    whose metadata name its timm architecture (``arch``, ``arch_kwargs`` as JSON, ``num_classes=0``) and
    hold ``metadata``: :func:`load_checkpoint` builds it from those (the zoo's files, training snapshots)."""
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in weights.items()
               if not k.startswith("head.")}
    return save(tensors, metadata={"arch": arch, "arch_kwargs": json.dumps({**arch_kwargs, "num_classes": 0}),
                                   **metadata})


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The metadata of a ``.safetensors`` file (``{}`` when it has none)."""
    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise VitscopeError(f"checkpoint '{path}' is not a readable .safetensors file: {first_line(e)}") from e


def load_checkpoint(path: Path, arch: str | None = None, arch_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """A timm ViT with the weights of checkpoint ``path`` (any format in :data:`FORMATS`, or a
    ``.safetensors`` encoder whose metadata name its architecture, :func:`encoder_safetensors`); ``arch``
    and its keywords ``arch_kwargs`` name the timm architecture instead of the file's own or its shapes."""
    checkpoint = read_checkpoint(path)
    meta = safetensors_metadata(path) if path.suffix == ".safetensors" else {}
    if "arch" in meta:
        try:
            saved_kwargs = json.loads(meta.get("arch_kwargs") or "{}")
        except json.JSONDecodeError as e:
            raise VitscopeError(f"checkpoint '{path}': its metadata 'arch_kwargs' is not JSON ({e.msg})") from e
        model = create_timm(arch or meta["arch"], pretrained=False, **{**saved_kwargs, **(arch_kwargs or {})})
        load_strict(model, checkpoint, f"checkpoint '{path}' ({meta['arch']} encoder)")
        return model
    try:
        name = detect_format(checkpoint)
    except VitscopeError as e:
        raise VitscopeError(f"checkpoint '{path}': {e}") from e
    fmt = FORMATS[name]
    source = f"checkpoint '{path}' ({name} format)"
    if name == "vitscope":
        raw = evaluated_encoder(checkpoint)
    else:
        raw = checkpoint.get(fmt.state_dict_key) if fmt.state_dict_key else checkpoint
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise VitscopeError(f"{source} has no state dict of tensors under '{fmt.state_dict_key}'")
    state_dict = fmt.convert(raw)
    if name == "vitscope":
        if checkpoint.get("version") != 1:
            raise VitscopeError(f"{source} has version {checkpoint.get('version')!r}; this vitscope reads version 1")
        saved_kwargs = checkpoint.get("arch_kwargs") or {}
        if not isinstance(saved_kwargs, Mapping):
            raise VitscopeError(f"{source}: 'arch_kwargs' must be a dict, got {type(saved_kwargs).__name__}")
        model = create_timm(arch or str(checkpoint.get("arch")), pretrained=False, **{**saved_kwargs, **(arch_kwargs or {})})
        load_strict(model, state_dict, source)
        return model
    model = build_for(state_dict, arch, source, fmt.heads, arch_kwargs)
    if not arch:
        set_data_config(model, fmt.mean, fmt.std)
    return model
