"""Which timm ViT a state dict (in timm key layout) belongs to, read off its tensor shapes.

=======================  ===================================================================
read from                gives
=======================  ===================================================================
``patch_embed.proj``     width ``[D, C, p, p]``: embed_dim, in_chans, patch_size
``blocks.N.*``           depth; ``mlp.fc1`` the MLP ratio; ``qkv.bias``/``q_bias`` qkv bias
``cls_token``            a class token; ``reg_token`` ``[1, R, D]``: R register tokens
``pos_embed``            ``[1, N, D]``: the grid (``N - prefix`` or ``N`` a square number;
                         the latter means prefix tokens carry no position, timm's
                         ``no_embed_class``); absent: no absolute position embedding
``ls1.gamma``/``gamma_1``  layer scale
relative position table  ``[(2W-1)² + 3, H]``: the grid W and the number of heads H (BEiT)
``norm``/``fc_norm``     final norm before pooling, or after average pooling (``avg``)
``head``                 ``[K, D]``: a K-way classifier; absent: ``num_classes=0``
=======================  ===================================================================

The number of heads of a ``VisionTransformer`` leaves no trace in shapes; the standard
one for the width is used (:data:`STANDARD_HEADS`, or the release format's own table, else
head dim 64), unless the user names the architecture (``PATH@ARCH``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
from timm.models.beit import Beit
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from vitscope.errors import VitscopeError
from vitscope.models.converters import STANDARD_HEADS, is_beit_layout


def standard_heads(embed_dim: int, heads: Mapping[int, int] = STANDARD_HEADS) -> int:
    """Heads of the standard ViT of this width (``heads``); head dim 64 for other widths."""
    if embed_dim in heads:
        return heads[embed_dim]
    if embed_dim % 64 == 0:
        return embed_dim // 64
    raise VitscopeError(
        f"cannot tell the number of heads of a width-{embed_dim} ViT (standard widths: "
        f"{sorted(STANDARD_HEADS)}); name the timm architecture with PATH@ARCH")


def _square_side(n: int) -> int | None:
    side = math.isqrt(n)
    return side if n > 0 and side * side == n else None


def _depth(state_dict: Mapping[str, torch.Tensor]) -> int:
    indices = {int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not indices:
        raise VitscopeError("not a ViT checkpoint: no transformer blocks ('blocks.N.*' keys)")
    return max(indices) + 1


def _patch_embed(state_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
    weight = state_dict.get("patch_embed.proj.weight")
    if weight is None or weight.ndim != 4:
        sample = ", ".join(list(state_dict)[:4])
        raise VitscopeError(
            f"not a ViT checkpoint: no patch embedding 'patch_embed.proj.weight' [D, C, p, p] "
            f"(keys start: {sample})")
    return weight


def _grid_from_rel_table(rows: int) -> int:
    """Side W of the window whose BEiT bias table has ``(2W-1)² + 3`` rows."""
    side = _square_side(rows - 3)
    if side is None or side % 2 == 0:
        raise VitscopeError(f"relative position bias table has {rows} rows, not (2W-1)²+3 for any grid W")
    return (side + 1) // 2


def _head_kwargs(state_dict: Mapping[str, torch.Tensor], beit: bool) -> dict[str, Any]:
    """num_classes and pooling, which also decide whether ``norm`` or ``fc_norm`` exists."""
    num_classes = state_dict["head.weight"].shape[0] if "head.weight" in state_dict else 0
    fc_norm = "fc_norm.weight" in state_dict
    if beit:  # timm's Beit has fc_norm exactly when it pools by average
        return dict(num_classes=num_classes, global_pool="avg" if fc_norm else "token")
    pool = "avg" if fc_norm or "cls_token" not in state_dict else "token"
    return dict(num_classes=num_classes, global_pool=pool, fc_norm=fc_norm)


def infer_kwargs(state_dict: Mapping[str, torch.Tensor],
                 heads: Mapping[int, int] = STANDARD_HEADS) -> tuple[type[nn.Module], dict[str, Any]]:
    """The timm class (``VisionTransformer`` or ``Beit``) and its kwargs for ``state_dict``.

    ``heads`` maps width → number of heads where shapes cannot tell (a release format may
    differ from the standard: MoCo v3's ViT-S has 12 heads).
    """
    weight = _patch_embed(state_dict)
    embed_dim, in_chans, patch_h, patch_w = weight.shape
    hidden = state_dict.get("blocks.0.mlp.fc1.weight")
    if hidden is None:
        raise VitscopeError("not a timm ViT layout: block 0 has no 'mlp.fc1' layer")
    if "norm_pre.weight" in state_dict:
        raise VitscopeError("a pre-norm (CLIP-style) ViT: its LayerNorm eps and activation are not in the "
                            "shapes; name the timm architecture with PATH@ARCH")
    beit = is_beit_layout(state_dict)
    kwargs: dict[str, Any] = dict(
        embed_dim=embed_dim, in_chans=in_chans, patch_size=(patch_h, patch_w),
        depth=_depth(state_dict),
        # int(embed_dim * mlp_ratio) must give back the hidden width exactly.
        mlp_ratio=(hidden.shape[0] + 0.5) / embed_dim,
        **_head_kwargs(state_dict, beit),
    )
    prefix = int("cls_token" in state_dict)
    prefix += state_dict["reg_token"].shape[1] if "reg_token" in state_dict else 0
    grid = None
    if beit:
        table = state_dict.get("rel_pos_bias.relative_position_bias_table",
                               state_dict.get("blocks.0.attn.relative_position_bias_table"))
        if table is not None:
            grid = _grid_from_rel_table(table.shape[0])
        kwargs.update(
            num_heads=table.shape[1] if table is not None else standard_heads(embed_dim, heads),
            qkv_bias="blocks.0.attn.q_bias" in state_dict,
            init_values=0.1 if "blocks.0.gamma_1" in state_dict else None,
            use_abs_pos_emb="pos_embed" in state_dict,
            use_rel_pos_bias="blocks.0.attn.relative_position_bias_table" in state_dict,
            use_shared_rel_pos_bias="rel_pos_bias.relative_position_bias_table" in state_dict,
        )
    else:
        kwargs.update(
            num_heads=standard_heads(embed_dim, heads),
            qkv_bias="blocks.0.attn.qkv.bias" in state_dict,
            qk_norm="blocks.0.attn.q_norm.weight" in state_dict,
            init_values=1e-5 if "blocks.0.ls1.gamma" in state_dict else None,
            class_token="cls_token" in state_dict,
            reg_tokens=prefix - int("cls_token" in state_dict),
            weight_init="skip",  # every weight is loaded next; timm's init costs seconds for a ViT-B
        )
    if not beit and "norm.weight" not in state_dict and "fc_norm.weight" not in state_dict:
        kwargs["final_norm"] = False
    if "pos_embed" in state_dict:
        positions = state_dict["pos_embed"].shape[1]
        if (side := _square_side(positions - prefix)) is not None:
            grid = side
        elif not beit and (side := _square_side(positions)) is not None:
            grid, kwargs["no_embed_class"] = side, True
        else:
            raise VitscopeError(
                f"pos_embed has {positions} positions: not a square patch grid (+{prefix} prefix tokens)")
    elif not beit:
        kwargs["pos_embed"] = "none"
    if grid is not None:
        kwargs["img_size"] = (grid * patch_h, grid * patch_w)
    return (Beit if beit else VisionTransformer), kwargs


def head_kwargs_for_arch(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """kwargs a named timm architecture (``PATH@ARCH``) takes from the checkpoint: the head."""
    return _head_kwargs(state_dict, is_beit_layout(state_dict))
