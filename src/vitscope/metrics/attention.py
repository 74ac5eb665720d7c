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

import logging
import math
from collections.abc import Callable
from typing import Any

import torch

from vitscope.capture import ViTInfo
from vitscope.metrics.base import StreamingMetric
from vitscope.runtime import compiled

log = logging.getLogger(__name__)


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


def xlogx(a: torch.Tensor) -> torch.Tensor:
    """``a·log a`` elementwise, with ``0·log 0 = 0``.

    Same values as ``torch.special.xlogy(a, a)`` for ``a ≥ 0`` (below the smallest normal
    float the log is taken of that float, an error under ``1e-36``), but vectorised:
    ``xlogy`` runs about five times slower on the CPU.
    """
    return a.clamp_min(torch.finfo(a.dtype).tiny).log_().mul_(a)


def attention_entropy(a: torch.Tensor) -> torch.Tensor:
    """Mean row entropy ``H(k|q) = mean_q −Σ_k a log a`` (nats): ``[..., P, P]`` → ``[...]``."""
    return -xlogx(a).sum(-1).mean(-1)


def nmi_from_entropies(h_k: torch.Tensor, h_k_given_q: torch.Tensor, n: int) -> torch.Tensor:
    """``NMI = I/sqrt(H(q)·H(k))`` with ``I = H(k) − H(k|q)`` and ``H(q) = log n``.

    A map where every query attends to one and the same key has ``H(k) = 0`` and
    ``I = 0``; its NMI is defined as 0 (fully collapsed).
    """
    mi = (h_k - h_k_given_q).clamp_min(0)
    h_q = torch.log(torch.tensor(float(n), dtype=h_k.dtype, device=h_k.device))
    denom = torch.sqrt(h_q * h_k)
    return torch.where(denom > 0, mi / denom.clamp_min(torch.finfo(h_k.dtype).tiny), torch.zeros_like(mi))


def attention_nmi(a: torch.Tensor) -> torch.Tensor:
    """Normalised mutual information between queries and keys, ``[..., P, P]`` → ``[...]``.

    ``I(q;k)/sqrt(H(q)·H(k))`` with a uniform prior over queries (Park et al. Sec. 2),
    see :func:`nmi_from_entropies`.
    """
    pk = a.mean(-2)
    return nmi_from_entropies(-xlogx(pk).sum(-1), attention_entropy(a), a.shape[-2])


def nmi_from_marginal(pk: torch.Tensor, h_k_given_q: torch.Tensor) -> torch.Tensor:
    """NMI from the key marginal ``p(k)`` ``[..., P]`` and the mean row entropy ``H(k|q)`` ``[...]``
    (:func:`nmi_from_entropies` with ``H(k) = −Σ_k p(k) log p(k)`` and ``n = P``)."""
    return nmi_from_entropies(-xlogx(pk).sum(-1), h_k_given_q, pk.shape[-1])


def attention_statistics(
    attn: torch.Tensor, num_prefix_tokens: int, dist: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distance, NMI and entropy of the patch attention in one sweep: ``[..., N, N]`` → 3 × ``[...]``.

    Equals :func:`attention_distance`, :func:`attention_nmi` and :func:`attention_entropy`
    of ``patch_attention(attn, num_prefix_tokens)`` without materialising the
    renormalised map. With ``a(q,k)`` the patch-to-patch block and ``r_q = Σ_k a(q,k)``:

        d̄      = mean_q (Σ_k a·d) / r_q
        H(k|q) = mean_q (r_q log r_q − Σ_k a log a) / r_q
        p(k)   = mean_q a(q,k) / r_q,    H(k) = −Σ_k p(k) log p(k)

    ``a·log a`` is computed once for both entropy and NMI. A row with ``r_q = 0`` (all
    attention on prefix tokens) contributes 0 to every sum, as in :func:`patch_attention`.
    The PyTorch version for every device; on the CPU, given the softmax's scores,
    :func:`vitscope.metrics.attention_cpu.patch_row_sums` does the same in one pass.
    """
    a = attn[..., num_prefix_tokens:, num_prefix_tokens:].float()
    n = a.shape[-1]
    r = a.sum(-1)
    inv_r = 1 / r.clamp_min(torch.finfo(a.dtype).tiny)
    distance = (torch.linalg.vecdot(a, dist.to(a)) * inv_r).mean(-1)  # einsum: 2× slower on an AMD CPU
    h_k_given_q = ((xlogx(r) - xlogx(a).sum(-1)) * inv_r).mean(-1)
    pk = (inv_r.unsqueeze(-2) @ a).squeeze(-2) / n
    return distance, nmi_from_marginal(pk, h_k_given_q), h_k_given_q


def cpu_row_sums() -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None:
    """:func:`vitscope.metrics.attention_cpu.patch_row_sums`, or None (with a warning) where numba
    cannot be imported or cannot cache its kernel; then :func:`attention_statistics` serves."""
    try:
        from vitscope.metrics.attention_cpu import patch_row_sums  # numba: imported when first needed
    except Exception as e:  # noqa: BLE001 - ImportError, or numba's RuntimeError for an unwritable cache
        log.warning("attention statistics on the CPU without the numba kernel (%s: %s): slower, same values",
                    type(e).__name__, e)
        return None
    return patch_row_sums


class AttentionStats(StreamingMetric):
    """Per layer and head: attention distance (px), NMI and entropy, averaged over images.

    On the CPU it also takes the ``attn_logits`` tap and runs
    :func:`vitscope.metrics.attention_cpu.patch_row_sums` (one compiled pass per row, no
    logarithm per weight); elsewhere, and for a model whose softmax output is not what
    ``attn_drop`` receives (the tap does not fire), :func:`attention_statistics`.
    ``compile=True`` runs the latter through ``torch.compile``, which fuses its passes over
    the ``[B, H, N, N]`` map into one (``runtime.compiled``; eager if that fails).
    Measured figures: docs/analysis.md, Speed.
    """

    name = "attention"
    taps: tuple[str, ...] = ("attn",)
    compilable = True

    def __init__(self, info: ViTInfo, device: torch.device | str = "cpu", compile: bool = False) -> None:
        super().__init__(info, device)
        self._statistics = compiled(attention_statistics, compile)
        self._row_sums = cpu_row_sums() if self.device.type == "cpu" else None
        if self._row_sums is not None:  # attn_logits fires first, where it fires at all (capture.BEST_EFFORT_TAPS)
            self.taps = ("attn_logits", "attn")
        shape = (info.depth, info.num_heads)
        self.dist_sum = self.add_state("distance", shape)
        self.nmi_sum = self.add_state("nmi", shape)
        self.ent_sum = self.add_state("entropy", shape)
        self.count = self.add_state("count", (info.depth,))
        self._dist = grid_distances(info.grid_size, info.patch_size).float().to(self.device)
        self._logits: dict[int, torch.Tensor] = {}  # a layer's softmax scores until its probabilities come

    def update(self, layer: int, tap: str, x: torch.Tensor) -> None:
        if tap == "attn_logits":
            self._logits[layer] = x
            return
        logits = self._logits.pop(layer, None)
        if logits is not None and self._row_sums is not None and logits.shape == x.shape:
            distance, entropy, pk = self._row_sums(x, logits, self.info.num_prefix_tokens, self._dist)
            stats = (distance, nmi_from_marginal(pk, entropy), entropy)
        else:
            stats = self._statistics(x, self.info.num_prefix_tokens, self._dist)
        sums = torch.stack(stats).sum(1).double()
        self.dist_sum[layer] += sums[0]
        self.nmi_sum[layer] += sums[1]
        self.ent_sum[layer] += sums[2]
        self.count[layer] += x.shape[0]

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
