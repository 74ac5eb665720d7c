"""Pretraining configuration: dataclass defaults → JSON file → command-line overrides.

Layered like DINOv2 / timm's train.py: :class:`PretrainConfig` holds every knob with its
default; ``--config FILE.json`` replaces some; explicit command-line options (and
``--set KEY=VALUE``) replace those. Unknown keys are rejected with the list of valid
ones, and the resolved config is written as ``config.json`` next to the checkpoints.

Fields left at ``None`` take a per-method default in :func:`resolve` (learning rate,
weight decay, β2, mask ratio, ...), so ``config.json`` always records the values used.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from vitscope.errors import VitscopeError
from vitscope.schedule import warmup_cosine

METHODS = ("moco", "dino", "simmim", "mae", "hybrid")
MIM_METHODS = ("simmim", "mae")
DINO_CENTERINGS = ("ema", "sinkhorn")  # DINO's teacher centring: its EMA centre, or Sinkhorn–Knopp (DINOv2)

#: Per-method defaults after the official recipes: MoCo v3 ViT (AdamW, base lr 1.5e-4 per
#: 256 images, wd 0.1), SimMIM ViT-B (base lr 1e-4 per 512 = 5e-5 per 256, wd 0.05),
#: MAE (base lr 1.5e-4 per 256, wd 0.05, β2 0.95), DINO ViT (``main_dino.py``: base lr 5e-4 per
#: 256, wd 0.04 → 0.4 on a cosine, 10 warm-up epochs of 100, gradients clipped at 3). The
#: hybrid takes MoCo's optimiser.
METHOD_DEFAULTS: dict[str, dict[str, float]] = {
    "moco": dict(blr=1.5e-4, weight_decay=0.1, beta2=0.999, warmup_epochs=40 / 300),
    "dino": dict(blr=5e-4, weight_decay=0.04, weight_decay_end=0.4, beta2=0.999, warmup_epochs=10 / 100,
                 clip_grad=3.0),
    "simmim": dict(blr=5e-5, weight_decay=0.05, beta2=0.999, warmup_epochs=10 / 800, mask_ratio=0.6),
    "mae": dict(blr=1.5e-4, weight_decay=0.05, beta2=0.95, warmup_epochs=40 / 800, mask_ratio=0.75),
    "hybrid": dict(blr=1.5e-4, weight_decay=0.1, beta2=0.999, warmup_epochs=40 / 300),
}


@dataclass
class PretrainConfig:
    """Every setting of ``vitscope pretrain``; ``None`` means "the method's default"."""

    method: str = "moco"
    model: str = "vit_tiny_patch4_32"
    data: str = "cifar10:train"
    out: str = "runs/pretrain"
    epochs: int = 100
    batch_size: int = 512  # global, over all processes
    lr: float | None = None  # peak learning rate; default blr · batch_size / 256
    blr: float | None = None
    min_lr: float = 0.0
    warmup_epochs: float | None = None  # default: the official warmup fraction × epochs
    weight_decay: float | None = None
    weight_decay_end: float | None = None  # weight decay on a half cosine to this value; default: constant
    beta2: float | None = None
    clip_grad: float | None = None  # max gradient norm (global); 0 = off; default 3 for DINO, else off
    lam: float = 0.5  # hybrid: L = (1-λ)·L_MIM + λ·L_CL
    mim: str = "simmim"  # hybrid's masked-image objective
    seed: int = 0
    num_images: int | None = None  # seeded subset of the data
    save_every: int = 10  # epochs between checkpoints (and always at the end)
    keep_every: int = 0  # also keep checkpoint-epochN.pt every N epochs; 0 = never
    snapshot_every: int = 0  # also write the encoder as snapshots/step-NNNNNN.safetensors every N steps; 0 = never
    log_every: int = 50  # steps between log lines (the only host syncs)
    grad_cos_every: int = 100  # hybrid: steps between gradient-cosine measurements
    compile: bool = False
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU), bf16, fp32
    device: str = "auto"
    data_on_device: str = "auto"  # auto, yes, no
    load_size: int | None = None  # streamed data: images resized/cropped to this side
    workers: int = 8
    tensorboard: bool = True
    local_attention: int = 0  # odd window K: patches attend to a K×K neighbourhood; 0 = off
    sincos_pos: bool = True  # fixed 2-D sin-cos position embedding (MoCo v3, MAE)
    frozen_patch_embed: bool | None = None  # MoCo v3's stop-grad-conv1; default on for moco/hybrid
    drop_path: float = 0.0
    # MoCo v3
    moco_dim: int = 256
    moco_mlp_dim: int = 4096
    moco_t: float = 0.2
    moco_m: float = 0.99
    crop_min: float = 0.08
    # DINO
    dino_out_dim: int = 4096  # K prototypes (official 65,536 for ImageNet; see train/dino.py)
    dino_hidden_dim: int = 2048
    dino_bottleneck_dim: int = 256
    dino_m: float = 0.996  # teacher momentum, half cosine to 1
    dino_teacher_temp: float = 0.04  # main_dino.py's default; its ViT-S/16 recipe warms 0.04 → 0.07 over 30 epochs
    dino_warmup_teacher_temp: float = 0.04
    dino_warmup_teacher_temp_epochs: float = 0.0  # 0.07 after a 1.6-epoch warm-up collapsed (docs/pretrain.md)
    dino_student_temp: float = 0.1
    dino_center_m: float = 0.9
    dino_freeze_last_layer: float = 1.0  # epochs with the prototypes frozen
    dino_norm_last_layer: bool = True  # prototype norms fixed to 1 (official default); False: learnable (ViT-S/16)
    dino_global_crop_min: float | None = None  # default 0.4 with local crops, 0.14 without (official advice)
    dino_last_layer_lr: float = 1.0  # the prototypes' (and norms') lr as a fraction of the lr, once unfrozen
    dino_last_layer_decay: bool = True  # weight decay on the prototypes (official: yes)
    dino_centering: str = "ema"  # ema (DINO's centre) | sinkhorn (Sinkhorn–Knopp, DINOv2; beyond the DINO paper)
    dino_sinkhorn_iterations: int = 3  # DINOv2's default
    dino_koleo: float = 0.0  # weight of the KoLeo regulariser (DINOv2: 0.1; beyond the DINO paper)
    local_crops: int = 0  # DINO's small crops per image
    local_crop_size: int | None = None  # default 96/224 of the input, in whole patches
    # masked image modelling
    mask_ratio: float | None = None
    mask_patch_size: int | None = None  # SimMIM; default 2 × the ViT patch
    decoder_dim: int = 128  # MAE decoder (official ViT-B: 512 wide, 8 deep)
    decoder_depth: int = 2
    decoder_heads: int = 4
    norm_pix_loss: bool = True
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # timm.create_model kwargs (fresh models)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


FIELD_NAMES = tuple(f.name for f in fields(PretrainConfig))
#: Keys that may differ between a run and its ``--resume`` without changing the result.
RUNTIME_KEYS = ("out", "compile", "device", "workers", "log_every", "tensorboard", "save_every", "keep_every",
                "snapshot_every")


def _field_type(name: str) -> Any:
    hints = typing.get_type_hints(PretrainConfig)
    return hints[name]


def _coerce(name: str, value: Any) -> Any:
    """Check/convert ``value`` for field ``name``; raise :class:`VitscopeError` if it does not fit."""
    tp = _field_type(name)
    args = typing.get_args(tp)
    optional = type(None) in args
    is_union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    base = next((a for a in args if a is not type(None)), tp) if args and is_union else tp
    if value is None:
        if optional:
            return None
        raise VitscopeError(f"config key '{name}' may not be null")
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif base is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(base) is dict or base is dict:
        if isinstance(value, dict):
            return value
    raise VitscopeError(f"config key '{name}' expects {tp}, got {value!r}")


def apply_overrides(cfg: PretrainConfig, overrides: dict[str, Any], source: str) -> PretrainConfig:
    """A copy of ``cfg`` with ``overrides`` applied; unknown keys are an error."""
    unknown = sorted(set(overrides) - set(FIELD_NAMES))
    if unknown:
        raise VitscopeError(f"unknown config key(s) {unknown} in {source}. Valid options are: {list(FIELD_NAMES)}")
    return replace(cfg, **{k: _coerce(k, v) for k, v in overrides.items()})


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` → dict; values are JSON when they parse as JSON, else strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise VitscopeError(f"--set expects KEY=VALUE, got '{item}'")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise VitscopeError(f"cannot read config file {path}: {e}") from e
    if not isinstance(data, dict):
        raise VitscopeError(f"config file {path} must hold a JSON object")
    return data


def resolve(cfg: PretrainConfig) -> PretrainConfig:
    """Validate ``cfg`` and fill every ``None`` with the method's default (see METHOD_DEFAULTS)."""
    if cfg.method not in METHODS:
        raise VitscopeError(f"unknown method '{cfg.method}'. Valid options are: {list(METHODS)}")
    if cfg.mim not in MIM_METHODS:
        raise VitscopeError(f"unknown MIM objective '{cfg.mim}'. Valid options are: {list(MIM_METHODS)}")
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise VitscopeError(f"unknown precision '{cfg.precision}'. Valid options are: ['auto', 'bf16', 'fp32']")
    if cfg.data_on_device not in ("auto", "yes", "no"):
        raise VitscopeError(f"unknown data_on_device '{cfg.data_on_device}'. Valid options are: ['auto', 'yes', 'no']")
    if not 0.0 <= cfg.lam <= 1.0:
        raise VitscopeError(f"lambda must lie in [0, 1], got {cfg.lam}")
    if cfg.epochs <= 0 or cfg.batch_size <= 0:
        raise VitscopeError(f"epochs and batch size must be positive, got {cfg.epochs} and {cfg.batch_size}")
    if cfg.local_attention < 0 or (cfg.local_attention and cfg.local_attention % 2 == 0):
        raise VitscopeError(
            f"local attention window must be an odd number of patches (or 0), got {cfg.local_attention}")
    if cfg.save_every <= 0 or cfg.log_every <= 0 or cfg.grad_cos_every <= 0:
        raise VitscopeError("save_every, log_every and grad_cos_every must be positive")
    if cfg.keep_every < 0 or cfg.snapshot_every < 0:
        raise VitscopeError("keep_every and snapshot_every must be 0 (never) or positive")
    if cfg.local_crops < 0 or (cfg.local_crops and cfg.method != "dino"):
        raise VitscopeError(f"local_crops is a DINO setting (a count ≥ 0), got {cfg.local_crops} for '{cfg.method}'")
    if cfg.local_crops and cfg.local_attention:
        raise VitscopeError("local crops and local attention cannot be combined: the window mask is defined on "
                            "the model's own grid")
    if min(cfg.dino_teacher_temp, cfg.dino_warmup_teacher_temp, cfg.dino_student_temp) <= 0:
        raise VitscopeError("DINO temperatures must be positive")
    if cfg.dino_centering not in DINO_CENTERINGS:
        raise VitscopeError(f"unknown dino_centering '{cfg.dino_centering}'. Valid options are: {list(DINO_CENTERINGS)}")
    if cfg.dino_sinkhorn_iterations < 1 or cfg.dino_koleo < 0 or cfg.dino_last_layer_lr < 0:
        raise VitscopeError(f"dino_sinkhorn_iterations must be ≥ 1 (got {cfg.dino_sinkhorn_iterations}), "
                            f"dino_koleo ≥ 0 (got {cfg.dino_koleo}) and dino_last_layer_lr ≥ 0 "
                            f"(got {cfg.dino_last_layer_lr})")
    mim = cfg.mim if cfg.method == "hybrid" else cfg.method
    d = dict(METHOD_DEFAULTS[cfg.method])
    if mim in METHOD_DEFAULTS and "mask_ratio" in METHOD_DEFAULTS[mim]:
        d["mask_ratio"] = METHOD_DEFAULTS[mim]["mask_ratio"]
    blr = cfg.blr if cfg.blr is not None else d["blr"]
    ratio = cfg.mask_ratio if cfg.mask_ratio is not None else d.get("mask_ratio")
    if ratio is not None and not 0.0 < ratio < 1.0:
        raise VitscopeError(f"mask ratio must lie in (0, 1), got {ratio}")
    return replace(
        cfg,
        blr=blr,
        lr=cfg.lr if cfg.lr is not None else blr * cfg.batch_size / 256,
        weight_decay=cfg.weight_decay if cfg.weight_decay is not None else d["weight_decay"],
        weight_decay_end=cfg.weight_decay_end if cfg.weight_decay_end is not None else d.get("weight_decay_end"),
        clip_grad=cfg.clip_grad if cfg.clip_grad is not None else d.get("clip_grad", 0.0),
        dino_global_crop_min=cfg.dino_global_crop_min if cfg.dino_global_crop_min is not None
        else (0.4 if cfg.local_crops else 0.14),
        beta2=cfg.beta2 if cfg.beta2 is not None else d["beta2"],
        warmup_epochs=cfg.warmup_epochs if cfg.warmup_epochs is not None
        else round(d["warmup_epochs"] * cfg.epochs, 3),
        mask_ratio=ratio,
        frozen_patch_embed=cfg.frozen_patch_embed if cfg.frozen_patch_embed is not None
        else cfg.method in ("moco", "hybrid"),
    )


def check_resume(saved: dict[str, Any], overrides: dict[str, Any]) -> PretrainConfig:
    """The config to resume with: the saved one, where ``overrides`` may change runtime keys only."""
    base = apply_overrides(PretrainConfig(), saved, "the saved config")
    differ = sorted(k for k, v in overrides.items()
                    if k not in RUNTIME_KEYS and k in FIELD_NAMES and _coerce(k, v) != getattr(base, k))
    if differ:
        raise VitscopeError(
            f"--resume continues the saved run; these settings differ from it: {differ}. "
            f"Only {list(RUNTIME_KEYS)} may change.")
    return apply_overrides(base, {k: v for k, v in overrides.items() if k in RUNTIME_KEYS}, "the command line")


def config_for(overrides: dict[str, Any], resume: bool = False) -> PretrainConfig:
    """The config of a run: the defaults with ``overrides`` applied, or, with ``resume``, the one
    saved in the run folder (``overrides["out"]``) where ``overrides`` may change runtime keys only."""
    if not resume:
        return apply_overrides(PretrainConfig(), overrides, "the settings")
    saved = Path(overrides.get("out", PretrainConfig.out)) / "config.json"
    if not saved.is_file():
        raise VitscopeError(f"resume: no run to continue ({saved} is missing); start it without resuming")
    return check_resume(load_config_file(saved), overrides)


def run_keys(cfg: PretrainConfig | dict[str, Any]) -> dict[str, Any]:
    """The settings that determine a run's result (all but :data:`RUNTIME_KEYS`)."""
    d = asdict(cfg) if isinstance(cfg, PretrainConfig) else dict(cfg)
    return {k: v for k, v in d.items() if k not in RUNTIME_KEYS}


def lr_at(step: int, steps_per_epoch: int, cfg: PretrainConfig) -> float:
    """Linear warmup from 0 to ``lr`` over ``warmup_epochs``, then half-cosine to ``min_lr``.

    lr(t) = lr · t / T_w for t < T_w, else
    min_lr + (lr − min_lr) · ½ (1 + cos(π (t − T_w) / (T − T_w))).
    """
    assert cfg.lr is not None and cfg.warmup_epochs is not None  # resolved config
    return warmup_cosine(step, cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch, cfg.lr, cfg.min_lr)


def cosine_to(step: int, total: int, start: float, end: float) -> float:
    """Half cosine from ``start`` at t = 0 to ``end`` at t = T: end + ½ (start − end)(1 + cos(π t / T))."""
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * step / total))


def momentum_at(step: int, total: int, base: float) -> float:
    """The momentum-encoder schedule of MoCo v3 and DINO: m(t) = 1 − ½ (1 + cos(π t / T)) (1 − m₀), from m₀ to 1."""
    return cosine_to(step, total, base, 1.0)


def weight_decay_at(step: int, total: int, cfg: PretrainConfig) -> float:
    """Weight decay at ``step``: constant, or DINO's half cosine to ``weight_decay_end``."""
    wd = float(cfg.weight_decay or 0.0)
    return wd if cfg.weight_decay_end is None else cosine_to(step, total, wd, cfg.weight_decay_end)
