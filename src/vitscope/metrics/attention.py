"""Self-attention behaviour: attention distance, NMI and entropy (Park et al. Figs. 3, 4, E.1).

Conventions (the official notebooks and their sources disagree; these are ours):

* Prefix tokens (CLS, registers) are dropped from queries and keys and every row is
  renormalised to sum to 1, so all three quantities describe attention *between image
  patches* (:func:`patch_attention`).
* Attention distance ``d̄ = mean_q Σ_k a(k|q)·d(q,k)``, with ``d`` the Euclidean distance
  between patch centres in **pixels** (patch size × grid distance).
* NMI takes a uniform prior over queries, ``p(q) = 1/N``, ``p(q,k) = a(k|q)/N``,
  ``p(k) = mean_q a(k|q)``: ``NMI = I(q;k)/sqrt(H(q)·H(k))`` with ``I = H(k) − H(k|q)``
  and ``H(q) = log N``. Uniform attention gives 0, the identity gives 1.
* Attention entropy is the mean row entropy ``H(k|q)`` in nats.

Every value is computed per image and head, then averaged over images.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vitscope.capture import ViTInfo
from vitscope.metrics.base import StreamingMetric


def patch_attention(attn: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """``[..., N, N]`` probabilities → ``[..., P, P]`` over patch tokens, rows renormalised."""
    a = attn[..., num_prefix_tokens:, num_prefix_tokens:].float()
    return a / a.sum(-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)


def grid_distances(grid_size: tuple[int, int], patch_size: tuple[int, int]) -> torch.Tensor:
    """``[P, P]`` pixel distances between patch centres of a row-major ``grid_size`` grid."""
    gh, gw = grid_size
    ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    pos = torch.stack((ys.flatten() * patch_size[0], xs.flatten() * patch_size[1]), -1).double()
    return torch.cdist(pos, pos)


def attention_distance(a: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Mean attention distance ``mean_q Σ_k a(k|q)·d(q,k)``: ``[..., P, P]`` → ``[...]``."""
    return (a * dist.to(a)).sum(-1).mean(-1)


def attention_entropy(a: torch.Tensor) -> torch.Tensor:
    """Mean row entropy ``H(k|q) = mean_q −Σ_k a log a`` (nats): ``[..., P, P]`` → ``[...]``."""
    return -torch.special.xlogy(a, a).sum(-1).mean(-1)


def attention_nmi(a: torch.Tensor) -> torch.Tensor:
    """Normalised mutual information between queries and keys, ``[..., P, P]`` → ``[...]``.

    ``I(q;k)/sqrt(H(q)·H(k))`` with a uniform prior over queries (Park et al. Sec. 2).
    A map where every query attends to one and the same key has ``H(k) = 0`` and
    ``I = 0``; its NMI is defined as 0 (fully collapsed).
    """
    n = a.shape[-2]
    pk = a.mean(-2)
    h_k = -torch.special.xlogy(pk, pk).sum(-1)
    mi = (h_k - attention_entropy(a)).clamp_min(0)
    h_q = torch.log(torch.tensor(float(n), dtype=a.dtype, device=a.device))
    denom = torch.sqrt(h_q * h_k)
    return torch.where(denom > 0, mi / denom.clamp_min(torch.finfo(a.dtype).tiny), torch.zeros_like(mi))


class AttentionStats(StreamingMetric):
    """Per layer and head: attention distance (px), NMI and entropy, averaged over images."""

    name = "attention"
    taps = ("attn",)

    def __init__(self, info: ViTInfo, device: torch.device | str = "cpu") -> None:
        super().__init__(info, device)
        shape = (info.depth, info.num_heads)
        self.dist_sum = self.add_state("distance", shape)
        self.nmi_sum = self.add_state("nmi", shape)
        self.ent_sum = self.add_state("entropy", shape)
        self.count = self.add_state("count", (info.depth,))
        self._dist = grid_distances(info.grid_size, info.patch_size).float().to(self.device)

    def update(self, layer: int, tap: str, x: torch.Tensor) -> None:
        a = patch_attention(x, self.info.num_prefix_tokens)
        self.dist_sum[layer] += attention_distance(a, self._dist).sum(0).double()
        self.nmi_sum[layer] += attention_nmi(a).sum(0).double()
        self.ent_sum[layer] += attention_entropy(a).sum(0).double()
        self.count[layer] += a.shape[0]

    def compute(self) -> dict[str, Any]:
        n = self.count.clamp_min(1)[:, None]
        per_head = {k: (s / n).cpu() for k, s in
                    (("distance", self.dist_sum), ("nmi", self.nmi_sum), ("entropy", self.ent_sum))}
        out: dict[str, Any] = {}
        for k, v in per_head.items():
            out[f"{k}_per_head"] = v.tolist()
            out[k] = v.mean(1).tolist()
        out["nmi_std_over_heads"] = per_head["nmi"].std(1, unbiased=False).tolist()
        out["distance_unit"] = "pixels"
        out["max_distance"] = float(self._dist.max())  # corner to corner: the axis range of a distance plot
        out["max_entropy"] = math.log(self.info.num_patches)  # uniform attention
        return out
