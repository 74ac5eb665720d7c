"""Token norms: where a ViT stores global information (Darcet et al., *Vision Transformers Need
Registers*, ICLR 2024).

Large, long-trained ViTs repurpose a few low-information patch tokens as global scratch space: the
ℓ2 norms of those tokens' outputs are an order of magnitude above the others' (a bimodal histogram,
Darcet Fig. 3), and they sit on patches that look like their neighbours (Fig. 4a). Per block, over
the **patch tokens only** (prefix tokens, CLS and ``reg_token`` registers, are counted apart):

* the distribution of ``‖x_p‖₂`` of the block's output tokens, streamed as a histogram of
  ``log10 ‖x_p‖`` (:data:`LOG10_RANGE`, :data:`BINS` bins of 0.02 decades, 4.7 %), from which the
  median and the 99th percentile are read (:func:`histogram_quantile`);
* **outliers**: patch tokens whose norm exceeds :data:`OUTLIER_FACTOR` times the median patch norm
  of their own image at that block (:func:`outlier_mask`); a rule relative to each image, so it
  carries across models of any scale. Darcet et al. set an absolute threshold at the gap of their
  bimodal histogram (150 for DINOv2 ViT-g, Fig. 3); the saved histogram lets one read such a gap;
* where the outliers sit: the mean cosine between a patch's token entering block 0 (patch
  embedding + position embedding) and its 4-neighbours on the grid (:func:`neighbour_cosine`),
  for outliers and for the other patches (Darcet Fig. 4a: high-norm tokens sit on patches similar
  to their neighbours, i.e. redundant, low-information ones);
* the mean norm of the prefix tokens (the registers take the high norms over, Darcet Fig. 7).
"""

from __future__ import annotations

from typing import Any

import torch

from vitscope.metrics.base import StreamingMetric
from vitscope.taps import ViTInfo

#: A patch token is an outlier when ``‖x_p‖ > OUTLIER_FACTOR · median_p' ‖x_p'‖`` over its image's patches.
OUTLIER_FACTOR = 4.0
#: The histogram of ``log10 ‖x‖``: norms from 1e-4 to 1e6 (those outside fall in the end bins).
LOG10_RANGE = (-4.0, 6.0)
BINS = 500
OUTLIER_RULE = (f"patch token norm > {OUTLIER_FACTOR:g} x the median patch-token norm of its image at that block "
                f"(torch.median: the lower middle value)")


def token_norms(x: torch.Tensor) -> torch.Tensor:
    """``‖x_t‖₂`` of every token: ``[B, N, D]`` → ``[B, N]`` (float32)."""
    return torch.linalg.vector_norm(x.float(), dim=-1)


def outlier_mask(norms: torch.Tensor, factor: float = OUTLIER_FACTOR) -> torch.Tensor:
    """``[B, P]`` patch-token norms → bool ``[B, P]``: ``‖x_p‖ > factor · median_p' ‖x_p'‖`` per image
    (the median of an even count is the lower middle value, as ``torch.median``)."""
    return norms > factor * norms.median(dim=1, keepdim=True).values


def log_norm_histogram(norms: torch.Tensor, bins: int = BINS,
                       log10_range: tuple[float, float] = LOG10_RANGE) -> torch.Tensor:
    """Counts of ``log10 ‖x‖`` in ``bins`` equal bins over ``log10_range`` (``[bins]``, float64); a norm
    outside the range counts in the end bin on its side, a zero norm in the first."""
    lo, hi = log10_range
    logs = norms.float().clamp_min(1e-30).log10().flatten()
    idx = ((logs - lo) / (hi - lo) * bins).floor().clamp_(0, bins - 1).long()
    return torch.bincount(idx, minlength=bins).double()


def histogram_quantile(counts: torch.Tensor, q: float,
                       log10_range: tuple[float, float] = LOG10_RANGE) -> float:
    """The norm at which the cumulative count of a :func:`log_norm_histogram` reaches ``q·n``,
    linear in ``log10`` within its bin (the inverse of the histogram's piecewise-linear CDF); exact to
    one bin, a factor ``10^((hi − lo)/bins)``. NaN for an empty histogram."""
    counts = counts.double().cpu()
    n = float(counts.sum())
    if n == 0:
        return float("nan")
    lo, hi = log10_range
    width = (hi - lo) / len(counts)
    cum = counts.cumsum(0)
    target = q * n
    i = int(torch.searchsorted(cum, torch.tensor([target], dtype=torch.float64)).clamp(max=len(counts) - 1))
    before = float(cum[i - 1]) if i > 0 else 0.0
    inside = float(counts[i])
    frac = (target - before) / inside if inside > 0 else 0.0
    return float(10 ** (lo + (i + min(max(frac, 0.0), 1.0)) * width))


def neighbour_cosine(x: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """Mean cosine of each patch token with its 4-neighbours on the grid (3 at an edge, 2 at a corner):
    ``[B, h·w, D]`` (row-major patch tokens) → ``[B, h·w]`` (Darcet et al. Fig. 4a)."""
    b, p, d = x.shape
    h, w = grid_size
    if p != h * w:
        raise ValueError(f"{p} tokens do not fill a {h}×{w} grid")
    z = torch.nn.functional.normalize(x.float(), dim=-1).reshape(b, h, w, d)
    total = torch.zeros(b, h, w, device=x.device)
    count = torch.zeros(h, w, device=x.device)
    down = (z[:, 1:] * z[:, :-1]).sum(-1)  # [B, h-1, w]: each vertical pair once
    right = (z[:, :, 1:] * z[:, :, :-1]).sum(-1)  # [B, h, w-1]
    total[:, 1:] += down
    total[:, :-1] += down
    total[:, :, 1:] += right
    total[:, :, :-1] += right
    count[1:] += 1
    count[:-1] += 1
    count[:, 1:] += 1
    count[:, :-1] += 1
    return (total / count.clamp_min(1)).reshape(b, p)


class NormStats(StreamingMetric):
    """Per block: the patch-token norm histogram, the outliers (:data:`OUTLIER_RULE`), their neighbour
    cosine against the others', the prefix tokens' mean norm (Darcet et al. Figs. 3, 4a, 7)."""

    name = "norms"
    taps = ("block_in", "block_out")

    def __init__(self, info: ViTInfo, device: torch.device | str = "cpu") -> None:
        super().__init__(info, device)
        depth = info.depth
        self.hist = self.add_state("histogram", (depth, BINS))
        self.sums = {k: self.add_state(k, (depth,)) for k in (
            "tokens", "norm", "outliers", "images_with_outliers", "images", "cos_outliers", "cos_others",
            "prefix_norm")}
        self._cos: torch.Tensor | None = None  # [B, P] neighbour cosine of the batch at block 0's input

    def update(self, layer: int, tap: str, x: torch.Tensor) -> None:
        k = self.info.num_prefix_tokens
        if tap == "block_in":  # block 0's input fires before every block_out of the same batch
            if layer == 0:
                self._cos = neighbour_cosine(x[:, k:], self.info.grid_size)
            return
        norms = token_norms(x)
        patches = norms[:, k:]
        out = outlier_mask(patches)
        cos = self._cos
        if cos is None:
            raise RuntimeError("norms: block 0's input was not seen before a block's output")
        s = self.sums
        self.hist[layer] += log_norm_histogram(patches)
        s["tokens"][layer] += patches.numel()
        s["norm"][layer] += patches.double().sum()
        s["outliers"][layer] += out.sum()
        s["images_with_outliers"][layer] += out.any(1).sum()
        s["images"][layer] += patches.shape[0]
        s["cos_outliers"][layer] += cos[out].double().sum()
        s["cos_others"][layer] += cos[~out].double().sum()
        if k:
            s["prefix_norm"][layer] += norms[:, :k].double().mean(1).sum()
        if layer == self.info.depth - 1:
            self._cos = None

    def compute(self) -> dict[str, Any]:
        s = {k: v.cpu() for k, v in self.sums.items()}
        hist = self.hist.cpu()
        tokens, outliers = s["tokens"], s["outliers"]

        def ratio(num: torch.Tensor, den: torch.Tensor) -> list[float | None]:
            return [float(a / b) if b > 0 else None for a, b in zip(num, den)]

        return {
            "median": [histogram_quantile(h, 0.5) for h in hist],
            "p99": [histogram_quantile(h, 0.99) for h in hist],
            "mean": ratio(s["norm"], tokens),
            "outlier_fraction": ratio(outliers, tokens),
            "images_with_outliers": ratio(s["images_with_outliers"], s["images"]),
            "neighbour_cosine_outliers": ratio(s["cos_outliers"], outliers),
            "neighbour_cosine_others": ratio(s["cos_others"], tokens - outliers),
            "prefix_mean_norm": ratio(s["prefix_norm"], s["images"]) if self.info.num_prefix_tokens else
            [None] * self.info.depth,
            "outlier_rule": OUTLIER_RULE,
            "log10_range": list(LOG10_RANGE),
            "log10_histogram": hist.tolist(),
        }
