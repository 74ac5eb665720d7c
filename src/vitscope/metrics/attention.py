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
* Windowed attention (SAM): the windows of one image together are one map over its ``n``
  patches, zero between windows, and the definitions above apply to it unchanged
  (:func:`window_attention_statistics`): distances inside a window are measured on the image
  grid, SAM's zero padding is dropped like prefix tokens, ``H(q) = log n``.
* Class attention (CaiT's class-attention blocks): the class token is the only query, so
  there is neither a query position (distance) nor a query distribution (``H(q) = log 1 = 0``,
  NMI undefined); only the entropy of its attention over the patches is reported
  (:func:`class_attention_entropy`), under ``class_attention`` in the results.

Every value is computed per image and head, then averaged over images.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch

from vitscope.metrics.base import StreamingMetric
from vitscope.runtime import compiled
from vitscope.taps import ViTInfo, window_tokens_to_grid, window_valid

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


def nmi_from_entropies(h_k: torch.Tensor, h_k_given_q: torch.Tensor, n: int | torch.Tensor) -> torch.Tensor:
    """``NMI = I/sqrt(H(q)·H(k))`` with ``I = H(k) − H(k|q)`` and ``H(q) = log n``.

    A map where every query attends to one and the same key has ``H(k) = 0`` and
    ``I = 0``; its NMI is defined as 0 (fully collapsed).
    """
    mi = (h_k - h_k_given_q).clamp_min(0)
    h_q = torch.log(torch.as_tensor(n, dtype=h_k.dtype, device=h_k.device))
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


def window_attention_map(attn: torch.Tensor, grid_size: tuple[int, int], window: int) -> torch.Tensor:
    """Windowed attention ``[..., W, H, T, T]`` (SAM) → ``[..., H, n, n]`` over the ``n`` patches of the
    image, row-major on its grid: the windows of one image together are one map, zero between
    windows; padding keys are dropped and rows renormalised, padding queries left out (what
    :func:`window_attention_statistics` measures without forming the map)."""
    valid = window_valid(grid_size, window).to(attn.device)  # [W, T]
    w, t = valid.shape
    a = patch_attention(attn * valid[:, None, None, :], 0)  # padding keys dropped, rows renormalised
    a = a.movedim(-4, -3)  # [..., H, W, T, T]
    full = a.new_zeros(*a.shape[:-3], w * t, w * t)
    for i in range(w):
        full[..., i * t:(i + 1) * t, i * t:(i + 1) * t] = a[..., i, :, :]
    order = window_tokens_to_grid(torch.arange(w * t, device=attn.device).view(w, t), grid_size, window)[0]
    return full[..., order, :][..., order]


def window_attention_statistics(
    attn: torch.Tensor, dist: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distance, NMI and entropy per image and head of windowed attention ``[B, W, H, T, T]`` → 3 × ``[B, H]``.

    ``valid`` ``[W, T]`` (bool) marks the window positions that hold an image patch
    (:func:`vitscope.taps.window_valid`); ``dist`` ``[T, T]``: pixel distances between the positions of a
    window, the same in every window. Padding keys are dropped and rows renormalised,
    padding queries left out; over the ``n`` patches of the image, with ``â`` the
    renormalised rows and ``q``, ``k`` in one window:

        d̄      = (1/n) Σ_q Σ_k â(k|q) d(q,k)
        H(k|q) = (1/n) Σ_q −Σ_k â log â
        p(k)   = (1/n) Σ_q â(k|q),   NMI from H(k) = −Σ_k p(k) log p(k) and H(q) = log n

    which is :func:`attention_statistics` of the ``[n, n]`` map the windows make together.
    """
    m = valid.to(device=attn.device, dtype=torch.float32)
    n = m.sum()  # the image's patches; a tensor, so that a GPU does not wait for it
    a = attn.float() * m[:, None, None, :]
    r = a.sum(-1)
    inv_r = m[:, None, :] / r.clamp_min(torch.finfo(a.dtype).tiny)  # 0 for a padding query
    distance = (torch.linalg.vecdot(a, dist.to(a)) * inv_r).sum((1, 3)) / n
    h_k_given_q = ((xlogx(r) - xlogx(a).sum(-1)) * inv_r).sum((1, 3)) / n
    pk = (inv_r.unsqueeze(-2) @ a).squeeze(-2) / n
    return distance, nmi_from_entropies(-xlogx(pk).sum((1, 3)), h_k_given_q, n), h_k_given_q


def class_attention_entropy(attn: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the class token's attention over the patches: ``[..., 1, 1 + P]`` → ``[...]``,
    its weight on itself (key 0) dropped and the row renormalised, as prefix tokens everywhere."""
    a = attn[..., 0, 1:].float()
    return -xlogx(a / a.sum(-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)).sum(-1)


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
    Windowed blocks (SAM) go through :func:`window_attention_statistics`; the class-attention
    blocks (CaiT, layers ``depth …``) through :func:`class_attention_entropy`.
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
        self._windows = {w: (grid_distances((w, w), info.patch_size).float().to(self.device),
                             window_valid(info.grid_size, w).to(self.device))
                         for w in set(info.window_sizes) if w}
        self._window_of = info.window_sizes or (0,) * info.depth  # per block; 0 = global attention
        if info.class_attention_depth:
            self.cls_ent_sum = self.add_state("class_entropy", (info.class_attention_depth, info.num_heads))
            self.cls_count = self.add_state("class_count", (info.class_attention_depth,))
        self._logits: dict[int, torch.Tensor] = {}  # a layer's softmax scores until its probabilities come

    def update(self, layer: int, tap: str, x: torch.Tensor) -> None:
        if tap == "attn_logits":
            self._logits[layer] = x
            return
        logits = self._logits.pop(layer, None)
        if layer >= self.info.depth:
            self._update_class_attention(layer - self.info.depth, x)
            return
        window = self._window_of[layer]
        if window:
            stats = window_attention_statistics(x, *self._windows[window])
        elif logits is not None and self._row_sums is not None and logits.shape == x.shape:
            distance, entropy, pk = self._row_sums(x, logits, self.info.num_prefix_tokens, self._dist)
            stats = (distance, nmi_from_marginal(pk, entropy), entropy)
        else:
            stats = self._statistics(x, self.info.num_prefix_tokens, self._dist)
        sums = torch.stack(stats).sum(1).double()
        self.dist_sum[layer] += sums[0]
        self.nmi_sum[layer] += sums[1]
        self.ent_sum[layer] += sums[2]
        self.count[layer] += x.shape[0]

    def _update_class_attention(self, j: int, x: torch.Tensor) -> None:
        """Class-attention block ``j``: the class token's attention ``[B, H, 1, 1 + P]``."""
        self.cls_ent_sum[j] += class_attention_entropy(x).sum(0).double()
        self.cls_count[j] += x.shape[0]

    def _class_attention_results(self) -> dict[str, Any]:
        """Entropy per class-attention block (and head); distance and NMI are undefined there."""
        per_head = (self.cls_ent_sum / self.cls_count.clamp_min(1)[:, None]).cpu()
        return {
            "labels": [f"class-attention block {j}" for j in range(self.info.class_attention_depth)],
            "entropy": per_head.mean(1).tolist(),
            "entropy_per_head": per_head.tolist(),
            "max_entropy": math.log(self.info.num_patches),
            "note": "the class token is the only query: entropy of its attention over the patches "
                    "(its own key dropped, renormalised); no distance (the query has no grid position) "
                    "and no NMI (H(q) = 0)",
        }

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
        if self.info.window_sizes:
            out["window_sizes"] = list(self.info.window_sizes)  # per block, in patches; 0 = global
        if self.info.class_attention_depth:
            out["class_attention"] = self._class_attention_results()
        return out
