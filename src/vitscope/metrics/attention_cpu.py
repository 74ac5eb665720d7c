"""The attention statistics on the CPU: one pass over each attention row, compiled with numba.

:func:`patch_row_sums` computes, for every image and head, what
:func:`vitscope.metrics.attention.attention_statistics` needs from the ``[N, N]`` map:
the mean attention distance, the mean row entropy ``H(k|q)`` and the key marginal
``p(k)``, over patch tokens with rows renormalised (prefix tokens dropped). It reads the
probabilities ``a`` and the scores ``s`` the softmax turned into them (the ``attn_logits``
tap) once, row by row, where the eager PyTorch version makes about ten passes over the
map and one logarithm per weight:

    r_q     = Σ_k a_qk                               (patch keys k)
    d̄      = mean_q (Σ_k a_qk d_qk) / r_q
    H(k|q)  = mean_q  log r_q − (Σ_k a_qk s_qk) / r_q + lse_q
    p(k)    = mean_q a_qk / r_q

``Σ_k a log a = Σ_k a s − r·lse`` because ``log a_k = s_k − lse`` for every key of a
softmax row, ``lse = log Σ_k exp s_k`` over all ``N`` keys. ``lse = s_j − log a_j`` at a
key ``j`` whose weight is within ``2^-20`` of the row's largest (the query itself, else the
first key, else the largest): there ``a_j`` is exact to a few ulps, so ``log a_j`` is exact
to ``ε·|s_j − max s|`` ≤ 2e-6 nats. A weight of exactly 0 from a score of ``−inf`` (a mask)
contributes 0; a row holding a NaN gives NaN, as in the eager version.

Sums run in float32 with reassociation allowed (vectorised, 8 lanes, like PyTorch's own
float32 sums); the per-head means in float64. The first call compiles the kernel (about a
second; cached on disk by numba afterwards). On the development CPU this is 4–5× faster
than the eager PyTorch statistics (docs/analysis.md, Speed).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

# contract: fused multiply-add; reassoc: vectorised sums; nsz: signs of zeros. No nnan/ninf:
# the -inf of masked scores and NaN rows must keep their meaning.
_FASTMATH = {"contract", "reassoc", "nsz"}
NEAR_MAX = np.float32(2.0**-20)
_LOWEST = np.float32(np.finfo(np.float32).min)
_ABS_BITS, _INF_BITS = np.int32(0x7FFFFFFF), np.int32(0x7F800000)  # |x| ≥ inf as bits: inf or NaN  # a weight this close to the row's largest gives lse to ~ε·14


@numba.njit(fastmath=_FASTMATH, inline="always", boundscheck=False)
def _largest_bits(bits: np.ndarray) -> np.int32:
    """Bit pattern of the largest of non-negative float32 weights (read as int32: same order)."""
    top = np.int32(0)
    for k in range(bits.shape[0]):
        b = bits[k]
        top = b if b > top else top
    return top


@numba.njit(fastmath=_FASTMATH, inline="always", boundscheck=False)
def _row_sums(a: np.ndarray, s: np.ndarray, d: np.ndarray) -> tuple[float, float, float]:
    """``Σ a``, ``Σ a·d`` and ``Σ a·s`` over one row's patch keys."""
    r = np.float32(0.0)
    ad = np.float32(0.0)
    as_ = np.float32(0.0)
    for k in range(a.shape[0]):
        x = a[k]
        r += x
        ad += x * d[k]
        as_ += x * s[k]
    return r, ad, as_


@numba.njit(parallel=True, fastmath=_FASTMATH, cache=True, boundscheck=False)
def _patch_rows(a, s, d, p, distance, entropy, pk):  # noqa: ANN001 - numba arrays
    """``a``, ``s``: ``[M, N, N]`` float32; ``d``: ``[P, P]``; fills ``distance``, ``entropy``
    ``[M]`` and ``pk`` ``[M, P]`` for each of the ``M`` maps (images × heads) in parallel."""
    m_maps, n = a.shape[0], a.shape[1]
    npatch = n - p
    bits = a.view(np.int32)
    for m in numba.prange(m_maps):
        inv = np.zeros(npatch, np.float32)  # 1 / r_q; 0 for a row with no weight on patches
        as_int = np.zeros(1, np.int32)  # one float32 read as its bits: fast-math folds isfinite away
        as_float = as_int.view(np.float32)
        dsum = 0.0
        hsum = 0.0
        for i in range(npatch):
            q = p + i
            arow, srow = a[m, q], s[m, q]
            r, ad, as_ = _row_sums(arow[p:], srow[p:], d[i])
            if r == 0:
                continue
            as_float[0] = as_
            if as_int[0] & _ABS_BITS >= _INF_BITS:  # 0·(−inf) of a masked key; NaN rows stay NaN below
                as_ = np.float32(0.0)
                for k in range(p, n):
                    as_ += arow[k] * max(srow[k], _LOWEST)  # a masked key: 0 · lowest float = 0
            top = _largest_bits(bits[m, q])
            as_int[0] = top
            largest = as_float[0]
            j = q
            if not arow[j] >= largest * NEAR_MAX:
                j = 0
                if not arow[j] >= largest * NEAR_MAX:
                    while j < n - 1 and bits[m, q, j] != top:
                        j += 1
            lse = srow[j] - math.log(arow[j])
            w = np.float32(1.0 / r)
            inv[i] = w
            dsum += ad * w
            hsum += math.log(r) - as_ * w + lse
        distance[m] = dsum / npatch
        entropy[m] = hsum / npatch
        out = pk[m]
        out[:] = 0
        for i in range(npatch):
            w = inv[i] / npatch
            row = a[m, p + i, p:]
            for k in range(npatch):
                out[k] += row[k] * w


def patch_row_sums(
    attn: torch.Tensor, logits: torch.Tensor, num_prefix_tokens: int, dist: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean distance ``[...]``, mean row entropy ``[...]`` and key marginal ``p(k)`` ``[..., P]``
    (float64) of the patch attention, from CPU probabilities and scores ``[..., N, N]`` (see
    the module)."""
    if attn.device.type != "cpu" or attn.shape != logits.shape:
        raise ValueError(f"CPU probabilities and scores of one shape, got {tuple(attn.shape)} on {attn.device} "
                         f"and {tuple(logits.shape)}")
    lead, n = attn.shape[:-2], attn.shape[-1]
    a = attn.detach().float().contiguous().view(-1, n, n).numpy()
    s = logits.detach().float().contiguous().view(-1, n, n).numpy()
    p = int(num_prefix_tokens)
    d = np.ascontiguousarray(dist.detach().cpu().numpy(), dtype=np.float32)
    distance, entropy = np.empty(len(a), np.float64), np.empty(len(a), np.float64)
    pk = np.empty((len(a), n - p), np.float32)
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    _patch_rows(a, s, d, p, distance, entropy, pk)
    return (torch.from_numpy(distance).view(lead), torch.from_numpy(entropy).view(lead),
            torch.from_numpy(pk).double().view(*lead, n - p))
