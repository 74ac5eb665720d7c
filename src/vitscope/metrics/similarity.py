"""Representational cosine similarities in self-attention (Park et al. Fig. 5).

* **heads**: cosine between the outputs of two different heads (``attn @ v`` per head,
  before the output projection) at the same token, mean over head pairs and tokens.
* **depth**: cosine between the residual stream before self-attention (block input) and
  right after it (``x + attn(norm1(x))``) at the same token, mean over tokens.
* **tokens**: cosine between the post-attention representations at two different
  spatial positions of one image, mean over token pairs.

Only patch tokens enter (prefix tokens dropped). Every value is per image, then
averaged over images. Mean pairwise cosine of ``n`` unit vectors ``z_i`` uses
``Σ_{i≠j} z_i·z_j = ‖Σ_i z_i‖² − n``, so no ``n × n`` matrix is formed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from vitscope.capture import ViTInfo
from vitscope.metrics.base import StreamingMetric
from vitscope.runtime import compiled


def mean_pairwise_cosine(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean cosine over all ordered pairs ``i ≠ j`` of vectors stacked along ``dim``.

    ``x``: ``[..., n, ..., D]`` with vectors in the last dimension; ``dim`` (≠ -1) indexes
    the ``n`` vectors. Returns ``x`` without ``dim`` and the last dimension.
    """
    n = x.shape[dim]
    if n < 2:
        raise ValueError(f"need at least two vectors along dim {dim}, got {n}")
    z = F.normalize(x.float(), dim=-1)
    s = z.sum(dim)
    return ((s * s).sum(-1) - n) / (n * (n - 1))


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity along the last dimension."""
    return F.cosine_similarity(a.float(), b.float(), dim=-1)


class SimilarityStats(StreamingMetric):
    """Per layer: mean head-head, before/after-attention and token-token cosine.

    ``compile=True`` runs :func:`mean_pairwise_cosine` and :func:`cosine` through
    ``torch.compile`` (``runtime.compiled``), which fuses their normalisations and sums.
    """

    name = "similarity"
    taps = ("head_out", "block_in", "attn_res")
    compilable = True

    def __init__(self, info: ViTInfo, device: torch.device | str = "cpu", compile: bool = False) -> None:
        super().__init__(info, device)
        self._pairwise = compiled(mean_pairwise_cosine, compile)
        self._cosine = compiled(cosine, compile)
        self.sums = {k: self.add_state(k, (info.depth,)) for k in ("heads", "depth", "tokens")}
        self.count = self.add_state("count", (info.depth,))
        self._before: dict[int, torch.Tensor] = {}

    def update(self, layer: int, tap: str, x: torch.Tensor) -> None:
        x = x[:, self.info.num_prefix_tokens:]
        if tap == "head_out":  # [B, P, H, Dh]; one head has no pair to compare
            if x.shape[2] > 1:
                self.sums["heads"][layer] += self._pairwise(x, dim=2).mean(1).sum().double()
        elif tap == "block_in":  # fires before attn_res within the same block
            self._before[layer] = x
        else:  # attn_res
            before = self._before.pop(layer)
            self.sums["depth"][layer] += self._cosine(before, x).mean(1).sum().double()
            self.sums["tokens"][layer] += self._pairwise(x, dim=1).sum().double()
            self.count[layer] += x.shape[0]

    def compute(self) -> dict[str, Any]:
        n = self.count.clamp_min(1)
        out = {f"{k}_cosine": (s / n).tolist() for k, s in self.sums.items()}
        if self.info.num_heads < 2:
            out["heads_cosine"] = [None] * self.info.depth
        return out
