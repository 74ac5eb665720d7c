"""Singular value spectra of representations (Park et al. Fig. 7, E.3).

Two distributions per depth (depth 0 is the patch embedding entering block 0, depth
``i`` the output of the ``i``-th block):

* **tokens**: the ``P`` patch tokens of one image, centred over the tokens; singular
  values sorted descending, then averaged over images (Fig. 7 top).
* **images**: one GAP vector per image (mean of its patch tokens), centred over the data
  set; singular values of that ``n × D`` matrix (Fig. 7 bottom). Streamed as the sum and
  the scatter matrix ``Σ x xᵀ`` in float64, so memory is ``O(D²)`` whatever ``n`` is.

Token spectra need one ``min(P, D)``-sized eigenproblem per image and depth, which no
GPU batches well, so they are averaged over ``token_images`` images (default 512, per
process; ``None`` = every image) spread evenly over the run (the first ones when the run's
size is not known); ``token_images_used`` and ``token_image_choice`` record which. Image
spectra always use every image.

A centred ``n × D`` sample has rank at most ``min(n − 1, D)``: values past that rank are
numerical noise and are not reported (a warning says so when ``n ≤ D``). Within it, a
sample can still be rank-deficient: the GAP vectors of a ViT/4's patch embedding span at
most the 48 dimensions of a 4×4×3 patch, whatever the width. Such singular values are
rounding noise whose logs move with the solver, so each depth also records its *numerical
rank* (:func:`numerical_rank`, rule :data:`IMAGE_RANK_RULE`) and comparisons of volume use
only values above it.

``Δ log singular value`` is ``log σ_i − log σ_ref`` with ``σ_ref`` the largest (Fig. 7)
or, with ``ref=1``, the second largest value, which Park et al. use to discount a single
dominant direction.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from vitscope.metrics.base import StreamingMetric
from vitscope.taps import ViTInfo

log = logging.getLogger(__name__)


def token_singular_values(x: torch.Tensor) -> torch.Tensor:
    """Singular values of each image's centred token matrix: ``[B, P, D]`` → ``[B, min(P, D)]``.

    Computed from the eigenvalues of the ``P × P`` (or ``D × D``) Gram matrix in float64
    (a float32 Gram would square the rounding error into the small values), descending.
    An image holding a NaN or inf gets NaN values (:func:`gram_eigenvalues` never sees it).
    """
    x = x.to(torch.float64, copy=True)  # centred in place: one [B, P, D] float64 copy, not two
    x -= x.mean(1, keepdim=True)
    finite = torch.isfinite(x.sum((1, 2)))  # float64 sums of float32-range values cannot overflow
    if not bool(finite.all()):
        x[~finite] = 0
    sv = gram_eigenvalues(x).clamp_min(0).sqrt().flip(-1)
    return torch.where(finite[:, None], sv, torch.full_like(sv, float("nan")))


def gram_eigenvalues(x: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of each ``xᵀx`` (or ``x xᵀ``, whichever is smaller), ascending: ``[B, P, D]`` →
    ``[B, min(P, D)]``. On the CPU each core forms and solves its share of the batch
    (:func:`on_cpu_cores`: numpy's ``matmul`` and LAPACK ``syevd``), a third faster than a
    batched product followed by the solves; elsewhere ``bmm`` and ``torch.linalg.eigvalsh``."""
    if x.device.type != "cpu" or x.shape[0] < 2:
        return torch.linalg.eigvalsh(x @ x.mT if x.shape[1] <= x.shape[2] else x.mT @ x)
    return on_cpu_cores(_gram_eigvalsh, x)


def _gram_eigvalsh(x: np.ndarray) -> np.ndarray:
    gram = np.matmul(x, x.transpose(0, 2, 1)) if x.shape[1] <= x.shape[2] else np.matmul(x.transpose(0, 2, 1), x)
    return np.linalg.eigvalsh(gram)


def finite_eigvalsh(a: torch.Tensor) -> torch.Tensor:
    """``eigvalsh`` of symmetric ``[..., n, n]`` matrices, ascending; a matrix holding a NaN or inf
    gets NaN eigenvalues instead of a solver that fails to converge (no host sync)."""
    finite = torch.isfinite(a).all(-1).all(-1)
    ev = batched_eigvalsh(torch.where(finite[..., None, None], a, torch.zeros_like(a)))
    return torch.where(finite[..., None], ev, torch.full_like(ev, float("nan")))


def batched_eigvalsh(a: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a batch of symmetric ``[..., n, n]`` matrices, ascending: ``torch.linalg.eigvalsh``
    on a GPU; on the CPU, LAPACK's ``syevd`` through numpy, the batch split over the cores
    (:func:`on_cpu_cores`).

    ``torch.linalg.eigvalsh`` solves a batch one matrix after the other, and a ``192 × 192``
    solve gains little from a second core: on the 2-core development machine the same
    solves take half the time with one single-threaded solve per core (numpy's gufunc
    releases the GIL), and the spectrum metric went from 2.83× to 2.29× plain inference
    (docs/analysis.md, Speed).
    """
    if a.device.type != "cpu" or a.ndim < 3 or a.shape[0] < 2 or a.dtype not in (torch.float32, torch.float64):
        return torch.linalg.eigvalsh(a)
    return on_cpu_cores(np.linalg.eigvalsh, a)


def on_cpu_cores(fn: Callable[[np.ndarray], np.ndarray], a: torch.Tensor) -> torch.Tensor:
    """``fn`` (a numpy function that releases the GIL) over ``a`` split along its first dimension
    into one part per torch thread, each run single-threaded in BLAS, results concatenated."""
    workers = max(1, min(torch.get_num_threads(), a.shape[0]))
    parts = np.array_split(a.detach().contiguous().numpy(), workers)
    with _blas_controller().limit(limits=1, user_api="blas"):  # one core per part, not two per part
        out = list(_solver_pool(workers).map(fn, parts))
    return torch.from_numpy(np.concatenate(out)).to(a.dtype)


@cache
def _solver_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="vitscope-eigvalsh")


@cache
def _blas_controller() -> ThreadpoolController:  # made once: it inspects the loaded libraries (ms)
    return ThreadpoolController()


def scatter_singular_values(total: torch.Tensor, scatter: torch.Tensor, n: int) -> torch.Tensor:
    """Singular values of the centred data matrix from its streamed moments.

    ``total = Σ x`` ``[..., D]``, ``scatter = Σ x xᵀ`` ``[..., D, D]`` over ``n`` rows; the
    centred scatter is ``S = Σ x xᵀ − n μ μᵀ`` and ``σ_i = sqrt(λ_i(S))``. Returns the top
    ``min(n − 1, D)`` values, descending (``[..., min(n − 1, D)]``; several moments solved
    together).
    """
    if n < 2:
        return scatter.new_zeros((*scatter.shape[:-2], 0))
    mu = total / n
    s = scatter - n * mu.unsqueeze(-1) * mu.unsqueeze(-2)
    ev = finite_eigvalsh((s + s.mT) / 2).flip(-1)
    return ev[..., : max(0, min(n - 1, s.shape[-1]))].clamp_min(0).sqrt()


#: The numerical-rank rule of the image spectrum, as recorded in results.json's conventions.
IMAGE_RANK_RULE = ("σ_i counts when σ_i > σ_max · (√min(n, D) · ε_data + √(D · ε_float64)): ε_data of the "
                   "activations' dtype bounds their rounding, ‖E‖₂ ≤ ε_data·‖X‖_F ≤ ε_data·√min(n, D)·σ_max "
                   "(Weyl), and √(D·ε_float64)·σ_max is the resolution of σ = √λ from the float64 scatter matrix")


def rank_tolerance(sigma_max: float, n: int, width: int, dtype: torch.dtype) -> float:
    """The smallest singular value distinguishable from zero (:data:`IMAGE_RANK_RULE`)."""
    eps_data = torch.finfo(dtype).eps
    eps64 = torch.finfo(torch.float64).eps
    return sigma_max * (min(n, width) ** 0.5 * eps_data + (width * eps64) ** 0.5)


def numerical_rank(values: torch.Tensor, n: int, width: int, dtype: torch.dtype) -> list[int]:
    """Per row of descending singular values ``[depths, k]``: how many exceed :func:`rank_tolerance`."""
    return [int((row > rank_tolerance(float(row[0]), n, width, dtype)).sum()) if row.numel() else 0 for row in values]


def delta_log(values: torch.Tensor, ref: int = 0) -> torch.Tensor:
    """``log σ − log σ[..., ref]`` along the last dimension."""
    lv = torch.log(values.clamp_min(torch.finfo(values.dtype).tiny))
    return lv - lv[..., ref : ref + 1]


class SpectrumStats(StreamingMetric):
    """Token and image (GAP) singular value spectra for the embedding and every block.

    The token spectra cover ``token_images`` images (``None``: every image): when the run
    announces its size (:meth:`expect_images`, which ``run_metrics`` calls), images evenly
    spaced over the whole run, so that a data set stored class by class is sampled across
    its classes and every batch carries the same share of the cost; otherwise the first
    ``token_images`` images.
    """

    name = "spectrum"
    taps = ("block_in", "block_out")

    def __init__(self, info: ViTInfo, device: torch.device | str = "cpu", token_images: int | None = 512) -> None:
        super().__init__(info, device)
        self.token_images = token_images
        self.expected_images: int | None = None
        depths, d = info.depth + 1, info.embed_dim
        self.k = min(info.num_patches, d)
        self.tok_sum = self.add_state("token_sv_sum", (depths, self.k))
        self.gap_sum = self.add_state("gap_sum", (depths, d))
        self.gap_scatter = self.add_state("gap_scatter", (depths, d, d))
        self.count = self.add_state("count", (depths,))
        self.tok_count = self.add_state("token_count", (depths,))
        self._seen = [0] * depths  # host-side image and token-image counts: no GPU sync per batch
        self._tok_seen = [0] * depths
        self.data_dtype = torch.float32  # the activations' dtype (bf16/fp16 under autocast): the rank rule's ε

    def expect_images(self, n: int) -> None:
        self.expected_images = n

    @property
    def spread(self) -> bool:
        """True when the token-spectrum sample is spread over an announced run larger than it."""
        m, n = self.token_images, self.expected_images
        return m is not None and n is not None and n > m

    def token_rows(self, start: int, size: int, taken: int) -> list[int]:
        """Which of the ``size`` images at stream positions ``start …`` get token spectra, given
        ``taken`` so far: position ``j`` of ``n`` expected when ``⌊(j+1)·m/n⌋ > ⌊j·m/n⌋``
        (exactly ``m`` evenly spaced positions), else the first ``m``."""
        m, n = self.token_images, self.expected_images
        if m is None:
            return list(range(size))
        if self.spread:
            rows = [j - start for j in range(start, start + size) if (j + 1) * m // n > j * m // n]
        else:
            rows = list(range(size))
        return rows[: max(0, m - taken)]

    def update(self, layer: int, tap: str, x: torch.Tensor) -> None:
        if tap == "block_in" and layer != 0:
            return
        depth = 0 if tap == "block_in" else layer + 1
        if x.dtype.is_floating_point and torch.finfo(x.dtype).eps > torch.finfo(self.data_dtype).eps:
            self.data_dtype = x.dtype
        x = x[:, self.info.num_prefix_tokens:]
        rows = self.token_rows(self._seen[depth], x.shape[0], self._tok_seen[depth])
        if rows:
            picked = x if len(rows) == x.shape[0] else x[rows]
            self.tok_sum[depth] += token_singular_values(picked).sum(0)
            self.tok_count[depth] += len(rows)
            self._tok_seen[depth] += len(rows)
        self._seen[depth] += x.shape[0]
        g = x.double().mean(1)
        self.gap_sum[depth] += g.sum(0)
        self.gap_scatter[depth] += g.T @ g
        self.count[depth] += x.shape[0]

    def compute(self) -> dict[str, Any]:
        n = int(self.count[0].item())
        if n <= self.info.embed_dim:
            log.warning("image spectrum from %d images of width %d: only the top %d singular values "
                        "are defined; use more images than the width for the full spectrum",
                        n, self.info.embed_dim, max(0, n - 1))
        tok = (self.tok_sum / self.tok_count.clamp_min(1)[:, None]).cpu()
        img = scatter_singular_values(self.gap_sum, self.gap_scatter, n).cpu()  # every depth saw n images
        used = int(self.tok_count[0].item())
        return {
            "depth_labels": ["embedding"] + [f"block {i}" for i in range(self.info.depth)],
            "token_log_sv": torch.log(tok.clamp_min(1e-300)).tolist(),
            "token_delta_log_sv": delta_log(tok).tolist(),
            "token_delta_log_sv_2nd": delta_log(tok, 1).tolist() if tok.shape[1] > 1 else None,
            "image_log_sv": torch.log(img.clamp_min(1e-300)).tolist(),
            "image_delta_log_sv": delta_log(img).tolist() if img.shape[1] else [],
            "image_delta_log_sv_2nd": delta_log(img, 1).tolist() if img.shape[1] > 1 else None,
            "image_rank_reported": int(img.shape[1]),
            "image_numerical_rank": numerical_rank(img, n, self.info.embed_dim, self.data_dtype),
            "activation_dtype": str(self.data_dtype).removeprefix("torch."),
            "images": n,
            "token_images_used": used,
            "token_image_choice": ("evenly spaced over the run" if self.spread else "every image" if used == n
                                   else "the first images of the run"),
            "token_centring": "per image, over patch tokens",
            "image_vector": "mean of patch tokens (prefix tokens excluded)",
            "log": "natural",
        }
