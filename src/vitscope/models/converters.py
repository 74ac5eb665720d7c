"""Official checkpoint layouts → timm key layout: one detector, one pure converter per format.

A checkpoint file is a dict as its training code saved it. :func:`detect_format` names the
release format from the dict's keys; the format's :class:`CheckpointFormat` says where the
encoder's weights sit in the dict (``state_dict_key``) and how to rename them
(``convert``: ``state_dict -> state_dict``, no I/O). Converters drop only the keys listed
in their docstrings (projection heads, decoders, momentum encoders, buffers timm rebuilds);
everything else is passed on, so a strict load reports any key no converter expected.

After conversion the keys are those of timm's ``VisionTransformer`` (MoCo v3, MAE, DINO,
timm) or timm's ``Beit`` (BEiT, SimMIM: layer scale ``gamma_1/gamma_2``, ``q_bias/v_bias``,
relative position bias tables).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD

from vitscope.errors import VitscopeError

StateDict = dict[str, torch.Tensor]

VITSCOPE_FORMAT = "vitscope-checkpoint"

# Heads of the standard ViT-Ti, -S, -B, -L, -H by width (Dosovitskiy et al. 2021; Touvron et al. 2021).
STANDARD_HEADS: dict[int, int] = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}

# Keys whose presence marks BEiT's layout (shared by SimMIM's ViT) rather than timm's ViT.
BEIT_MARKERS = ("rel_pos_bias.", "relative_position_bias_table", ".attn.q_bias", ".gamma_1", "lm_head.")


def _strip(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """Keys starting with ``prefix``, with the prefix removed; other keys are left out."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _drop(state_dict: Mapping[str, torch.Tensor], drop: Callable[[str], bool]) -> StateDict:
    return {k: v for k, v in state_dict.items() if not drop(k)}


def convert_moco_v3(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """MoCo v3 (facebookresearch/moco-v3, ``main_moco.py``) → timm ``VisionTransformer``.

    The file's ``state_dict`` is the DDP-wrapped ``MoCo_ViT``: ``module.base_encoder.*`` is a
    timm ViT whose ``head`` is the projection MLP. Kept: ``module.base_encoder.*`` minus
    ``head.*`` (as ``main_lincls.py`` does). Dropped: ``module.momentum_encoder.*``,
    ``module.predictor.*``. Any other key is passed on unchanged (and fails a strict load).
    """
    encoder = _strip(state_dict, "module.base_encoder.")
    rest = {k: v for k, v in state_dict.items()
            if not k.startswith(("module.base_encoder.", "module.momentum_encoder.", "module.predictor."))}
    return {**_drop(encoder, lambda k: k.startswith("head.")), **rest}


def convert_mae(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """MAE (facebookresearch/mae, ``models_mae.py`` / ``models_vit.py``) → timm ``VisionTransformer``.

    Encoder keys are already timm's (MAE builds on timm blocks); a fine-tuned model has
    ``fc_norm`` (global pool) and ``head``. Dropped: the decoder (``decoder_*``) and
    ``mask_token``. The same nesting (``{"model": timm keys}``) is used by DeiT releases.
    """
    return _drop(state_dict, lambda k: k.startswith("decoder_") or k == "mask_token")


def convert_dino(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """DINO full checkpoint (facebookresearch/dino, ``main_dino.py``) → timm ``VisionTransformer``.

    ``teacher``/``student`` hold ``MultiCropWrapper`` state dicts: ``backbone.*`` is the ViT
    (timm keys), ``head.*`` the DINO projection head; the student is DDP-wrapped
    (``module.`` prefix). Kept: ``backbone.*``; dropped: ``head.*``. DINO's released
    backbone-only files are plain timm state dicts (format ``timm``).
    """
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    backbone = _strip(state_dict, "backbone.")
    rest = {k: v for k, v in state_dict.items() if not k.startswith(("backbone.", "head."))}
    return {**backbone, **rest}


def convert_beit(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """BEiT (microsoft/unilm ``beit/modeling_pretrain.py`` / ``modeling_finetune.py``) → timm ``Beit``.

    Key names already match timm's ``Beit`` (``gamma_1``, ``attn.q_bias``/``v_bias``,
    ``rel_pos_bias.relative_position_bias_table`` when shared, per-block tables when not).
    Dropped: ``lm_head.*`` (visual-token prediction), ``mask_token``, and the
    ``relative_position_index`` buffers (timm recomputes them).
    """
    return _drop(state_dict, lambda k: k.startswith("lm_head.") or k == "mask_token"
                 or k.endswith("relative_position_index"))


def convert_simmim(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """SimMIM (microsoft/SimMIM, ``models/simmim.py`` + ``models/vision_transformer.py``) → timm ``Beit``.

    ``model`` is ``SimMIM(encoder=VisionTransformerForSimMIM, decoder=conv)``; the encoder is
    BEiT's ViT (shared ``rel_pos_bias``, ``gamma_1/gamma_2``, ``q_bias/v_bias``). Kept:
    ``encoder.*``; dropped: ``decoder.*``, ``encoder.mask_token`` and the
    ``relative_position_index`` buffers.
    """
    encoder = _strip(state_dict, "encoder.")
    rest = {k: v for k, v in state_dict.items() if not k.startswith(("encoder.", "decoder."))}
    return convert_beit({**encoder, **rest})


def convert_timm(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """A plain timm state dict (``model.state_dict()``, also DINO's released backbones): as is."""
    return dict(state_dict)


@dataclass(frozen=True)
class CheckpointFormat:
    """A release format: where its encoder weights sit and how to rename them.

    ``state_dict_key``: the entry of the saved dict holding the weights (``None``: the dict
    itself). ``mean``/``std``: the normalisation its training code used. ``heads``: width →
    number of heads of its models, which shapes cannot reveal.
    """

    name: str
    state_dict_key: str | None
    convert: Callable[[Mapping[str, torch.Tensor]], StateDict]
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD
    heads: Mapping[int, int] = field(default_factory=lambda: dict(STANDARD_HEADS))


FORMATS: dict[str, CheckpointFormat] = {f.name: f for f in (
    CheckpointFormat("vitscope", "model", convert_timm),
    # moco-v3 vits.py: vit_small is 384 wide with 12 heads (head dim 32).
    CheckpointFormat("moco_v3", "state_dict", convert_moco_v3, heads={**STANDARD_HEADS, 384: 12}),
    CheckpointFormat("dino", "teacher", convert_dino),
    CheckpointFormat("simmim", "model", convert_simmim),
    CheckpointFormat("beit", "model", convert_beit, IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD),
    CheckpointFormat("mae", "model", convert_mae),
    CheckpointFormat("timm", None, convert_timm),
)}


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def detect_format(checkpoint: Mapping[str, Any]) -> str:
    """Name the release format of a loaded checkpoint dict (a key of :data:`FORMATS`).

    ============  ==============================================================
    format        recognised by
    ============  ==============================================================
    vitscope      ``checkpoint["format"] == "vitscope-checkpoint"``
    moco_v3       ``state_dict`` with ``module.base_encoder.*`` keys
    dino          ``teacher`` (and ``student``) entries
    simmim        ``model`` with ``encoder.*`` keys
    beit          ``model`` with BEiT keys (``rel_pos_bias``, ``q_bias``, ``gamma_1``, ``lm_head``)
    mae           ``model`` with timm ViT keys (MAE, DeiT)
    timm          the dict itself is a state dict (timm, DINO backbones, ``.safetensors``)
    ============  ==============================================================
    """
    if checkpoint.get("format") == VITSCOPE_FORMAT:
        return "vitscope"
    nested = checkpoint.get("state_dict")
    if _is_state_dict(nested) and any(k.startswith("module.base_encoder.") for k in nested):
        return "moco_v3"
    if _is_state_dict(checkpoint.get("teacher")):
        return "dino"
    model = checkpoint.get("model")
    if _is_state_dict(model):
        if any(k.startswith("encoder.") for k in model):
            return "simmim"
        if any(marker in k for k in model for marker in BEIT_MARKERS):
            return "beit"
        return "mae"
    if _is_state_dict(checkpoint):
        return "timm"
    entries = ", ".join(repr(k) for k in list(checkpoint)[:8]) or "none"
    raise VitscopeError(
        f"unrecognised checkpoint layout (top-level entries: {entries}); expected one of "
        f"{list(FORMATS)}: a state dict, or a dict with 'model', 'state_dict' or 'teacher'")


def is_beit_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True when converted keys belong to timm's ``Beit`` rather than ``VisionTransformer``."""
    return any(marker in k for k in state_dict for marker in BEIT_MARKERS)
