"""``hf:REPO_ID`` / ``hf:/local/dir`` → the equivalent timm ``VisionTransformer``.

Hugging Face ViT (``vit``), ViT-MAE (``vit_mae``), DINOv2 (``dinov2``) and DINOv2 with
registers (``dinov2_with_registers``) checkpoints are read as files: ``config.json``, the
weights (``model.safetensors``, sharded ``model.safetensors.index.json`` or
``pytorch_model.bin`` read with ``weights_only=True``) and, when present,
``preprocessor_config.json`` for mean/std. Only ``huggingface_hub`` is needed (downloads
go to its cache); ``transformers`` is not imported.

The converted model computes what the HF model computes: timm's ``forward_features``
equals HF's ``last_hidden_state`` and, for ``*ForImageClassification``, timm's
``forward`` equals HF's logits. Dropped on conversion: ``pooler.*`` (ViTModel's tanh
pooler, not part of a timm ViT), ``embeddings.mask_token`` and ViT-MAE's ``decoder.*``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.utils import EntryNotFoundError, HFValidationError, LocalEntryNotFoundError
from safetensors.torch import load_file
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import SwiGLUPacked
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from vitscope.errors import VitscopeError
from vitscope.models.checkpoints import load_strict, read_checkpoint, set_data_config
from vitscope.models.converters import StateDict
from vitscope.models.timm_factory import first_line

MODEL_TYPES = ("vit", "vit_mae", "dinov2", "dinov2_with_registers")

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")

# HF module path → timm module path, applied to keys after the task prefix is removed.
RENAMES: tuple[tuple[str, str], ...] = (
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.register_tokens$", "reg_token"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^encoder\.layer\.(\d+)\.norm([12])\.", r"blocks.\1.norm\2."),
    (r"^encoder\.layer\.(\d+)\.mlp\.(fc[12])\.", r"blocks.\1.mlp.\2."),
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_in\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_out\.", r"blocks.\1.mlp.fc2."),
    (r"^encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.", "head."),
)
QKV = re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$")
DROPPED = re.compile(r"^(pooler\.|decoder\.|embeddings\.mask_token$)")
TASK_PREFIXES = ("vit.", "dinov2.")

ACTIVATIONS: dict[str, Any] = {
    "gelu": nn.GELU,
    "gelu_new": partial(nn.GELU, approximate="tanh"),
    "gelu_pytorch_tanh": partial(nn.GELU, approximate="tanh"),
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "relu": nn.ReLU,
}


def convert_hf(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> StateDict:
    """HF ViT / ViT-MAE / DINOv2 keys → timm ``VisionTransformer`` keys.

    Separate ``query``/``key``/``value`` projections become one ``qkv`` (rows q, k, v);
    DINOv2-with-registers' position embedding (CLS + patches, registers unpositioned) is
    split as timm's ``no_embed_class`` wants: ``cls_token += pos[:, :1]``,
    ``pos_embed = pos[:, 1:]``.
    """
    out: StateDict = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        for prefix in TASK_PREFIXES:
            key = key.removeprefix(prefix)
        if DROPPED.match(key):
            continue
        if m := QKV.match(key):
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        for pattern, replacement in RENAMES:
            if re.match(pattern, key):
                key = re.sub(pattern, replacement, key)
                break
        out[key] = value
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise VitscopeError(f"HF layer {layer} has attention {kind}s for {sorted(parts)} only")
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    if config.get("model_type") == "dinov2_with_registers" and "pos_embed" in out and "cls_token" in out:
        out["cls_token"] = out["cls_token"] + out["pos_embed"][:, :1]
        out["pos_embed"] = out["pos_embed"][:, 1:]
    return out


def timm_kwargs(config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``VisionTransformer`` kwargs equivalent to an HF config (+ converted weights for the head)."""
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise VitscopeError(f"HF model type '{model_type}' is not supported. Valid options are: {list(MODEL_TYPES)}")
    width = int(config["hidden_size"])
    head = state_dict.get("head.weight")
    if head is not None and head.shape[1] != width:
        raise VitscopeError(
            f"the HF classifier takes {head.shape[1]} inputs (DINOv2's [CLS, mean patch] head) and has no "
            f"timm equivalent; load the backbone repo instead")
    act = ACTIVATIONS.get(str(config.get("hidden_act", "gelu")))
    if act is None:
        raise VitscopeError(f"HF activation '{config.get('hidden_act')}' is not supported. Valid options are: "
                            f"{list(ACTIVATIONS)}")
    kwargs: dict[str, Any] = dict(
        img_size=config.get("image_size", 224), patch_size=config.get("patch_size", 16),
        in_chans=config.get("num_channels", 3), embed_dim=width, depth=int(config["num_hidden_layers"]),
        num_heads=int(config["num_attention_heads"]), qkv_bias=bool(config.get("qkv_bias", True)),
        norm_layer=partial(nn.LayerNorm, eps=float(config.get("layer_norm_eps", 1e-12))), act_layer=act,
        num_classes=0 if head is None else head.shape[0], global_pool="token",
        weight_init="skip",  # every weight is loaded next
    )
    if model_type in ("vit", "vit_mae"):
        kwargs["mlp_ratio"] = (int(config["intermediate_size"]) + 0.5) / width
        return kwargs
    fc1 = state_dict.get("blocks.0.mlp.fc1.weight")
    if fc1 is None:
        raise VitscopeError("HF DINOv2 checkpoint has no MLP weights in layer 0")
    # int(width * mlp_ratio) must give back fc1's output width exactly.
    kwargs.update(mlp_ratio=(fc1.shape[0] + 0.5) / width, init_values=config.get("layerscale_value", 1.0),
                  dynamic_img_size=True)
    if config.get("use_swiglu_ffn"):
        kwargs.update(mlp_layer=SwiGLUPacked, act_layer=nn.SiLU)
    if model_type == "dinov2_with_registers":
        kwargs.update(reg_tokens=int(config.get("num_register_tokens", 0)), no_embed_class=True)
    return kwargs


class _Files:
    """Files of an HF model repo: a local directory, or downloaded from the hub into its cache."""

    def __init__(self, repo: str) -> None:
        self.repo = repo
        self.local = Path(repo).expanduser() if Path(repo).expanduser().is_dir() else None

    def get(self, name: str) -> Path | None:
        """Path of ``name``, or ``None`` when the repo has no such file."""
        if self.local is not None:
            path = self.local / name
            return path if path.is_file() else None
        try:
            return Path(hf_hub_download(self.repo, name))
        except HFValidationError as e:
            raise VitscopeError(f"'{self.repo}' is neither a local directory nor a valid HF repo id") from e
        except LocalEntryNotFoundError as e:  # offline and not cached (a subclass of the next)
            raise VitscopeError(f"could not fetch '{name}' of HF repo '{self.repo}': {first_line(e)}") from e
        except EntryNotFoundError:
            return None
        except Exception as e:  # hub unreachable, repo missing or gated: one line for the user
            raise VitscopeError(f"could not fetch '{name}' of HF repo '{self.repo}': {first_line(e)}") from e


def _read_weights(files: _Files) -> StateDict:
    for name in WEIGHT_FILES:
        path = files.get(name)
        if path is None:
            continue
        if name.endswith(".index.json"):
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
            state_dict: StateDict = {}
            for shard in shards:
                shard_path = files.get(shard)
                if shard_path is None:
                    raise VitscopeError(f"HF repo '{files.repo}' lists weight shard '{shard}' but lacks it")
                state_dict.update(load_file(shard_path))
            return state_dict
        return dict(read_checkpoint(path))
    raise VitscopeError(f"HF repo '{files.repo}' has no weights: expected one of {list(WEIGHT_FILES)}")


def load_hf(repo_id: str) -> nn.Module:
    """The timm ``VisionTransformer`` equivalent to HF checkpoint ``repo_id`` (hub id or local dir)."""
    files = _Files(repo_id)
    config_path = files.get("config.json")
    if config_path is None:
        raise VitscopeError(f"HF repo '{repo_id}' has no config.json")
    config = json.loads(config_path.read_text())
    state_dict = convert_hf(_read_weights(files), config)
    model = VisionTransformer(**timm_kwargs(config, state_dict))
    load_strict(model, state_dict, f"HF checkpoint '{repo_id}' ({config.get('model_type')})")
    preprocessor_path = files.get("preprocessor_config.json")
    preprocessor = json.loads(preprocessor_path.read_text()) if preprocessor_path else {}
    set_data_config(model, tuple(preprocessor.get("image_mean", IMAGENET_DEFAULT_MEAN)),
                    tuple(preprocessor.get("image_std", IMAGENET_DEFAULT_STD)))
    return model
