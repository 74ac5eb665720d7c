"""Pure functions behind the per-image views (tensor/array in → array out, no I/O).

Query maps (Park et al. Fig. 2), token projections before/after self-attention (Fig. 6,
E.3 left), t-SNE of tokens (Fig. E.2), the KDE of per-head NMI (Fig. E.1b) and the
uint8 quantisation the explorer page embeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vitscope.errors import VitscopeError
from vitscope.metrics.attention import patch_attention

Grid = tuple[int, int]


def parse_query(text: str, grid: Grid) -> tuple[int, int]:
    """``"ROW,COL"`` (0-based patch coordinates) → ``(row, col)``; an error names the grid if outside."""
    parts = text.replace(" ", "").split(",")
    try:
        row, col = (int(p) for p in parts)
    except ValueError:
        raise VitscopeError(f"query '{text}' must be ROW,COL (two integers), e.g. 3,4") from None
    gh, gw = grid
    if not (0 <= row < gh and 0 <= col < gw):
        raise VitscopeError(f"query {row},{col} is outside the {gh}×{gw} patch grid "
                            f"(rows 0…{gh - 1}, columns 0…{gw - 1})")
    return row, col


def default_queries(grid: Grid) -> list[tuple[int, int]]:
    """The centre patch ``(⌊h/2⌋, ⌊w/2⌋)`` and the top-left corner ``(0, 0)``."""
    return [(grid[0] // 2, grid[1] // 2), (0, 0)]


def query_maps(attn: torch.Tensor, query: tuple[int, int], grid: Grid, num_prefix_tokens: int) -> torch.Tensor:
    """Attention of one query patch over the patch grid: ``[..., N, N]`` → ``[..., h, w]``.

    Row ``q = row·w + col`` of the patch attention (prefix tokens dropped, rows
    renormalised, :func:`~vitscope.metrics.attention.patch_attention`), so each map sums to 1.
    """
    a = patch_attention(attn, num_prefix_tokens)
    q = query[0] * grid[1] + query[1]
    return a[..., q, :].unflatten(-1, grid)


def pca_before_after(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One 2-D PCA fitted to the tokens before *and* after self-attention together.

    ``before``, ``after``: ``[n_images, P, D]``. Returns both projected, ``[n_images, P, 2]``,
    and the explained-variance ratio of the two components. Fitting one projection to both
    sets keeps their relative position meaningful (Fig. 6 compares them in one space).
    """
    from sklearn.decomposition import PCA

    n, p, d = before.shape
    pca = PCA(n_components=2, svd_solver="full").fit(np.concatenate([before, after]).reshape(-1, d))
    return (pca.transform(before.reshape(-1, d)).reshape(n, p, 2),
            pca.transform(after.reshape(-1, d)).reshape(n, p, 2), pca.explained_variance_ratio_)


def tsne_2d(tokens: np.ndarray, seed: int, perplexity: float = 30.0) -> tuple[np.ndarray, float, float]:
    """scikit-learn t-SNE of ``[M, D]`` tokens → ``([M, 2], perplexity used, KL divergence)``.

    Perplexity is capped at ``(M − 1)/3`` (sklearn needs it below ``M``); PCA initialisation. One
    thread (OpenMP and BLAS, :mod:`threadpoolctl`): at the few thousand tokens of ``inspect``, more
    threads only oversubscribe a shared CPU (2.4x slower on 2 busy cores, up to 15x seen), and the
    embedding no longer depends on the machine's core count.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    m = len(tokens)
    if m < 4:
        raise VitscopeError(f"t-SNE needs at least 4 tokens, got {m}")
    perp = float(min(perplexity, (m - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed, learning_rate="auto")
    with threadpool_limits(limits=1):
        emb = tsne.fit_transform(tokens.astype(np.float32))
    return emb, perp, float(tsne.kl_divergence_)


def gaussian_kde_curve(values: Sequence[float], xs: np.ndarray) -> np.ndarray | None:
    """Gaussian KDE (Scott's bandwidth, scipy) of ``values`` at ``xs``; None when it is undefined
    (fewer than two values, or all equal)."""
    from scipy.stats import gaussian_kde

    v = np.asarray(values, dtype=float)
    if len(v) < 2 or np.ptp(v) == 0:
        return None
    return gaussian_kde(v)(xs)


def quantise_rows(a: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Attention rows → (uint8 ``round(255 · a / max_k a)``, float32 row maxima ``max_k a``).

    One byte per entry keeps every map's shape (what the explorer draws); the row maxima
    (one float per map) put the absolute scale back: ``a ≈ q / 255 · max``.
    """
    peak = a.amax(-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
    q = torch.round(255 * a / peak).to(torch.uint8).cpu().numpy()
    return q, peak[..., 0].float().cpu().numpy()


def to_pixels(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised model inputs ``[B, 3, H, W]`` → displayable uint8 ``[B, H, W, 3]`` (x·std + mean)."""
    m = torch.tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype).view(1, -1, 1, 1)
    x = (images.cpu() * s + m).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
