"""The decoder of an MAE pretraining checkpoint, run on full images (mask ratio 0), for analysis.

Park et al. Fig. 10 analyses MAE's encoder *and* decoder with a masking ratio of zero.
With nothing masked, MAE's ``forward_decoder`` (facebookresearch/mae ``models_mae.py``) is

    x = decoder_embed(encoder(images))  [B, 1+L, D_dec]   (no mask tokens to insert)
    x = x + decoder_pos_embed
    x = decoder_norm(decoder_blocks(x))

:class:`MAEDecoderView` is that computation shaped like a timm ViT (``blocks`` are the
decoder blocks, ``patch_embed`` is the encoder's, ``forward_features(images)``), so the
analysis engine and its taps treat the decoder as one more ViT. Two layouts are read:

* official MAE pretraining files: ``model`` holds the encoder's timm keys and
  ``decoder_embed``, ``mask_token``, ``decoder_pos_embed``, ``decoder_blocks.*``,
  ``decoder_norm``, ``decoder_pred``; 16 decoder heads (every released
  ``mae_vit_*_dec512d8b``), LayerNorm eps 1e-6;
* vitscope's own ``pretrain --method mae`` (or hybrid with ``--mim mae``) checkpoints:
  ``objective`` holds the same modules (``decoder_pos`` for the position embedding,
  :class:`vitscope.train.mae.MAE`), the head count is ``config.decoder_heads``, eps 1e-5.

``mask_token`` and ``decoder_pred`` are not needed without masking and are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from timm.models.vision_transformer import Block
from torch import nn

from vitscope.errors import VitscopeError
from vitscope.models.checkpoints import load_strict, read_checkpoint
from vitscope.models.loader import parse_spec

OFFICIAL_DECODER_HEADS = 16


class MAEDecoderView(nn.Module):
    """``encoder`` (a timm ViT) followed by an MAE decoder, mask ratio 0; ``blocks`` = decoder blocks."""

    def __init__(self, encoder: nn.Module, width: int, depth: int, heads: int, mlp_ratio: float, eps: float,
                 qkv_bias: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.patch_embed = encoder.patch_embed  # the grid the decoder's tokens live on
        self.num_prefix_tokens = int(encoder.num_prefix_tokens)
        self.embed_dim = width
        tokens = self.num_prefix_tokens + self.patch_embed.num_patches
        self.decoder_embed = nn.Linear(int(encoder.embed_dim), width)
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, tokens, width), requires_grad=False)
        norm = partial(nn.LayerNorm, eps=eps)
        self.blocks = nn.Sequential(*[Block(width, heads, mlp_ratio, qkv_bias=qkv_bias, norm_layer=norm)
                                      for _ in range(depth)])
        self.decoder_norm = norm(width)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` → decoder tokens after ``decoder_norm``, ``[B, P+L, D_dec]``."""
        x = self.decoder_embed(self.encoder.forward_features(images)) + self.decoder_pos_embed
        return self.decoder_norm(self.blocks(x))

    def summary(self) -> dict[str, Any]:
        return {"depth": len(self.blocks), "num_heads": int(self.blocks[0].attn.num_heads),
                "embed_dim": self.embed_dim, "mask_ratio": 0.0}


def _decoder_state(checkpoint: Mapping[str, Any], source: str) -> tuple[dict[str, torch.Tensor], int, float, str]:
    """(decoder state dict in :class:`MAEDecoderView`'s keys, heads, LayerNorm eps, layout name)."""
    def find(sd: Any) -> str | None:
        if not isinstance(sd, Mapping):
            return None
        return next((k[: -len("decoder_embed.weight")] for k in sd if isinstance(k, str)
                     and k.endswith("decoder_embed.weight")), None)

    official, own = checkpoint.get("model"), checkpoint.get("objective")
    if checkpoint.get("format") != "vitscope-checkpoint" and find(official) == "":
        sd, heads, eps, layout = dict(official), OFFICIAL_DECODER_HEADS, 1e-6, "official MAE pretraining"
        pos = "decoder_pos_embed"
    elif (prefix := find(own)) is not None:
        sd = {k[len(prefix):]: v for k, v in own.items() if k.startswith(prefix)}
        config = checkpoint.get("config") if isinstance(checkpoint.get("config"), Mapping) else {}
        heads, eps, layout, pos = int(config.get("decoder_heads", 0)), 1e-5, "vitscope MAE pretraining", "decoder_pos"
        if heads <= 0:
            raise VitscopeError(f"{source}: its config names no decoder_heads")
    else:
        raise VitscopeError(f"{source} has no MAE decoder: --decoder needs an official MAE pretraining checkpoint "
                            "or a vitscope `pretrain --method mae` (or hybrid --mim mae) checkpoint")
    out = {"decoder_pos_embed" if k == pos else k.replace("decoder_blocks.", "blocks."): v for k, v in sd.items()
           if k.startswith(("decoder_embed.", "decoder_blocks.", "decoder_norm.")) or k == pos}
    return out, heads, eps, layout


def load_mae_decoder(spec: str, encoder: nn.Module) -> tuple[MAEDecoderView, str]:
    """The decoder of checkpoint ``spec`` on top of ``encoder`` (loaded from the same file), and its layout."""
    s = parse_spec(spec)
    if s.source != "file":
        raise VitscopeError(f"'{spec}' has no MAE decoder: --decoder needs an MAE pretraining checkpoint file")
    path = Path(s.target)
    source = f"checkpoint '{path}'"
    sd, heads, eps, layout = _decoder_state(read_checkpoint(path), source)
    width = int(sd["decoder_embed.weight"].shape[0])
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    if depth == 0 or width % heads:
        raise VitscopeError(f"{source}: a decoder of width {width} and {depth} blocks cannot have {heads} heads")
    mlp_ratio = sd["blocks.0.mlp.fc1.weight"].shape[0] / width
    view = MAEDecoderView(encoder, width, depth, heads, mlp_ratio, eps, qkv_bias="blocks.0.attn.qkv.bias" in sd)
    probe = nn.Module()  # the decoder's parts only: the encoder was loaded (strictly) by models.load
    for name in ("decoder_embed", "blocks", "decoder_norm"):
        probe.add_module(name, getattr(view, name))
    probe.register_parameter("decoder_pos_embed", view.decoder_pos_embed)
    load_strict(probe, sd, f"{source} ({layout} decoder)")
    return view.eval(), layout
