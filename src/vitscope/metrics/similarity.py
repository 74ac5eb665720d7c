"""Representational cosine similarities in self-attention (Park et al. Fig. 5).

* **heads**: cosine between the outputs of two different heads (``attn @ v`` per head,
  before the output projection) at the same token, mean over head pairs and tokens.
* **depth**: cosine between the residual stream before self-attention (block input) and
  right after it (``x + attn(norm1(x))``) at the same token, mean over tokens.
* **tokens**: cosine between the post-attention representations at two different
  spatial positions of one image, mean over token pairs.

Only patch tokens enter (prefix tokens dropped). Every value is per image, then
averaged over images. Mean pairwise cosine of ``n`` unit vectors ``z_i`` uses
``Σ_{i≠j} z_i·z_j = ‖Σ_i z_i‖² − Σ_i ‖z_i‖²`` (``= ‖Σ_i z_i‖² − n`` without zero vectors),
so no ``n × n`` matrix is formed.
"""

from __future__ import annotations

from typing import Any

import torch

from vitscope.metrics.base import StreamingMetric
from vitscope.runtime import compiled
from vitscope.taps import ViTInfo


def inverse_norms(norms: torch.Tensor) -> torch.Tensor:
    """``1 / max(‖x‖, 1e-12)`` from the norms ``‖x‖`` (``F.normalize``'s ε): a zero vector stays zero."""
    return norms.clamp_min(1e-12).reciprocal_()


def mean_pairwise_cosine(x: torch.Tensor, dim: int, norms: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cosine over all ordered pairs ``i ≠ j`` of vectors stacked along ``dim``.

    ``x``: ``[..., n, ..., D]`` with vectors in the last dimension; ``dim`` (≠ -1) indexes
    the ``n`` vectors; ``norms``: their lengths ``‖x_i‖`` (``[..., n, ...]``), if already at
    hand. ``Σ_{i≠j} z_i·z_j = ‖Σ_i z_i‖² − Σ_i ‖z_i‖²`` with ``z_i = x_i / ‖x_i‖`` (``‖z_i‖² = 1``
    except for a zero vector, which has cosine 0 with every other). ``Σ_i z_i`` is one matrix
    product for many vectors (tokens) and a multiply-and-sum for a few (heads), whichever
    ran faster on the CPU. Returns ``x`` without ``dim`` and the last dimension.
    """
    dim %= x.ndim
    n = x.shape[dim]
    if n < 2 or dim == x.ndim - 1:
        raise ValueError(f"need at least two vectors along dim {dim} (not the last), got {n}")
    x = x.float()
    norms = torch.linalg.vector_norm(x, dim=-1) if norms is None else norms
    w = inverse_norms(norms)
    if n > 8:
        s = (w.movedim(dim, -1).unsqueeze(-2) @ x.movedim(dim, -2)).squeeze(-2)
    else:
        s = (x * w.unsqueeze(-1)).sum(dim)
    return ((s * s).sum(-1) - (norms * w).square().sum(dim)) / (n * (n - 1))


def cosine(a: torch.Tensor, b: torch.Tensor, norm_b: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity along the last dimension, ``a·b / (max(‖a‖, ε)·max(‖b‖, ε))``;
    ``norm_b``: the lengths ``‖b‖``, if already at hand."""
    a, b = a.float(), b.float()
    norm_b = torch.linalg.vector_norm(b, dim=-1) if norm_b is None else norm_b
    return (a * b).sum(-1) * inverse_norms(torch.linalg.vector_norm(a, dim=-1)) * inverse_norms(norm_b)


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
            before, x = self._before.pop(layer), x.float()  # one float32 copy under autocast, not three
            norms = torch.linalg.vector_norm(x, dim=-1)  # shared by both cosines
            self.sums["depth"][layer] += self._cosine(before, x, norms).mean(1).sum().double()
            self.sums["tokens"][layer] += self._pairwise(x, dim=1, norms=norms).sum().double()
            self.count[layer] += x.shape[0]

    def compute(self) -> dict[str, Any]:
        n = self.count.clamp_min(1)
        out = {f"{k}_cosine": (s / n).tolist() for k, s in self.sums.items()}
        if self.info.num_heads < 2:
            out["heads_cosine"] = [None] * self.info.depth
        return out
