"""Re-initialising the first or last ``k`` blocks before fine-tuning (Park et al. App. F, Fig. F.3).

The chosen blocks get timm's own initialisation of the model, applied module by module
the way ``VisionTransformer.init_weights`` does it: the per-module function of the
model's ``weight_init_mode`` (``timm.models.vision_transformer.get_init_weights_vit``;
mode ``''``, timm's default, is ``init_weights_vit_timm``: ``nn.Linear`` weights
truncated normal with std 0.02, biases zero, LayerNorm reset to weight 1 / bias 0,
LayerScale reset to its ``init_values``). Models that are not a timm
``VisionTransformer`` (BEiT) use ``init_weights_vit_timm``. Everything outside the
chosen blocks (embeddings, other blocks, final norm, head) is left untouched.
"""

from __future__ import annotations

import torch
from timm.models._manipulate import named_apply
from timm.models.vision_transformer import get_init_weights_vit, init_weights_vit_timm
from torch import nn

from vitscope.errors import VitscopeError
from vitscope.taps import blocks_of


def parse_reinit(text: str, depth: int) -> list[int]:
    """``"first:K"`` → blocks ``0..K-1``; ``"last:K"`` → ``depth-K..depth-1``; ``""`` → none."""
    if not text:
        return []
    where, _, k_text = text.partition(":")
    try:
        k = int(k_text)
    except ValueError:
        k = -1
    if where not in ("first", "last") or not 0 <= k <= depth:
        raise VitscopeError(
            f"bad --reinit '{text}': expected first:K or last:K with 0 ≤ K ≤ {depth} (the model's depth). "
            "Valid options are: ['first:K', 'last:K']"
        )
    return list(range(k)) if where == "first" else list(range(depth - k, depth))


def reinit_blocks(model: nn.Module, blocks: list[int], seed: int = 0) -> None:
    """Re-initialise ``model.blocks[i]`` for ``i`` in ``blocks`` in place (module docstring)."""
    all_blocks = blocks_of(model)
    mode = getattr(model, "weight_init_mode", None)
    init_fn = init_weights_vit_timm if mode is None else get_init_weights_vit(mode, needs_reset=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in blocks:
            named_apply(init_fn, all_blocks[i], name=f"blocks.{i}")
