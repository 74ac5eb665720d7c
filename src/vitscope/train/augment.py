"""Self-supervised augmentations, batched on the device with torch ops.

Each view is made from a uint8 batch ``[B, 3, H, W]`` in one pass: random resized crop and
horizontal flip as one per-sample affine warp (``F.affine_grid`` + ``F.grid_sample``,
bilinear), colour jitter, greyscale, Gaussian blur (per-sample σ, separable grouped
convolution), solarisation, normalisation. Every random number is drawn from a
:class:`BatchRandom` for the *global* batch and sliced to this process's rows, so a
sample's views do not depend on how many processes share the batch, and a resumed run
draws exactly what an uninterrupted one would.

The pure functions follow torchvision's definitions (tested against
``torchvision.transforms.v2.functional``): ``brightness`` = x·f, ``contrast`` blends with
the mean grey level, ``saturation`` with the grey image, ``hue`` rotates H in HSV. The
colour-jitter order is fixed (brightness, contrast, saturation, hue) instead of
torchvision's per-image random order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

GREY = (0.2989, 0.587, 0.114)


class BatchRandom:
    """Uniform draws for a global batch of ``global_batch`` samples, sliced to rows ``[lo, hi)``.

    Seeded from ``(seed, step, stream)`` so each step's draws are reproducible on their own.
    """

    def __init__(self, seed: int, step: int, global_batch: int, lo: int, hi: int,
                 device: torch.device, stream: int = 0) -> None:
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed((seed * 1_000_003 + step) * 97 + stream)
        self.global_batch, self.lo, self.hi, self.device = global_batch, lo, hi, device

    def uniform(self, *shape: int) -> torch.Tensor:
        """``[hi - lo, *shape]`` uniform [0, 1) numbers."""
        u = torch.rand(self.global_batch, *shape, generator=self.gen, device=self.device)
        return u[self.lo:self.hi]

    def between(self, low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * self.uniform(*shape)


@dataclass(frozen=True)
class ViewSpec:
    """One augmentation pipeline; probabilities of 0 switch a step off.

    ``blur_sigma`` is in pixels of a 224-px image (torchvision / PIL radius) and is scaled
    by ``size / 224``, so a 32-px CIFAR view is blurred as much, relative to its size, as
    an ImageNet one.
    """

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: float = 0.0
    jitter_strength: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    grey: float = 0.0
    blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize: float = 0.0


def moco_views(crop_min: float = 0.08) -> tuple[ViewSpec, ViewSpec]:
    """MoCo v3's asymmetric BYOL pair: blur 1.0 / 0.1, solarise 0 / 0.2 (``moco/loader.py``)."""
    common = dict(scale=(crop_min, 1.0), jitter=0.8, grey=0.2)
    return ViewSpec(blur=1.0, **common), ViewSpec(blur=0.1, solarize=0.2, **common)


def dino_views(global_scale: tuple[float, float] = (0.4, 1.0), local_scale: tuple[float, float] = (0.05, 0.4),
               local_crops: int = 0) -> tuple[ViewSpec, ...]:
    """DINO's crops (``main_dino.py``'s ``DataAugmentationDINO``): two global crops with
    MoCo v3's asymmetric BYOL pipeline (blur 1.0 / 0.1, solarise 0 / 0.2, jitter p = 0.8,
    grey p = 0.2) at ``global_scale``, then ``local_crops`` crops at ``local_scale`` with
    blur p = 0.5."""
    common = dict(jitter=0.8, grey=0.2)
    first = ViewSpec(scale=global_scale, blur=1.0, **common)
    second = ViewSpec(scale=global_scale, blur=0.1, solarize=0.2, **common)
    return (first, second, *[ViewSpec(scale=local_scale, blur=0.5, **common)] * local_crops)


SIMMIM_VIEW = ViewSpec(scale=(0.67, 1.0))  # SimMIM: RandomResizedCrop(0.67, 1), flip
MAE_VIEW = ViewSpec(scale=(0.2, 1.0))  # MAE: RandomResizedCrop(0.2, 1), flip


# ---- pure functions -------------------------------------------------------------------------
def crop_boxes(u: torch.Tensor, scale: tuple[float, float], ratio: tuple[float, float]) -> torch.Tensor:
    """Random-resized-crop boxes ``[B, 4]`` = (x0, y0, w, h) as fractions of a square image.

    ``u [B, T, 4]`` uniforms give T tries of (area, log-aspect, x, y) as torchvision does:
    the first try whose w, h ≤ 1 is taken, else the whole image.
    """
    area = scale[0] + (scale[1] - scale[0]) * u[..., 0]
    logr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[..., 1]
    w, h = (area * logr.exp()).sqrt(), (area / logr.exp()).sqrt()
    ok = (w <= 1) & (h <= 1)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full_like(ok[:, 0], -1, dtype=torch.long))
    pick = first.clamp(min=0)[:, None]
    w = torch.where(first >= 0, w.gather(1, pick)[:, 0], torch.ones_like(w[:, 0]))
    h = torch.where(first >= 0, h.gather(1, pick)[:, 0], torch.ones_like(h[:, 0]))
    x0 = (1 - w) * u[..., 2].gather(1, pick)[:, 0]
    y0 = (1 - h) * u[..., 3].gather(1, pick)[:, 0]
    return torch.stack([x0, y0, w, h], dim=1)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each image to its box (fractions), flip where ``flip`` [B] is true, resize to size×size.

    Output pixel centre i maps to x0 + (i + ½)/size · w of the input (bilinear, borders
    clamped); with a full box and ``size == H`` this is the identity.
    """
    x0, y0, w, h = boxes.unbind(1)
    sign = 1.0 - 2.0 * flip.to(boxes.dtype)
    theta = torch.zeros(len(boxes), 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = (w * sign).to(images.dtype)
    theta[:, 0, 2] = (2 * x0 + w - 1).to(images.dtype)
    theta[:, 1, 1] = h.to(images.dtype)
    theta[:, 1, 2] = (2 * y0 + h - 1).to(images.dtype)
    grid = F.affine_grid(theta, [len(images), images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _per_sample(f: torch.Tensor) -> torch.Tensor:
    return f.view(-1, 1, 1, 1)


def grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``[B, 1, H, W]`` = 0.2989 R + 0.587 G + 0.114 B."""
    return (x[:, 0] * GREY[0] + x[:, 1] * GREY[1] + x[:, 2] * GREY[2]).unsqueeze(1)


def brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * _per_sample(f)).clamp(0, 1)


def contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    mean = grey(x).mean(dim=(1, 2, 3), keepdim=True)
    return (_per_sample(f) * x + (1 - _per_sample(f)) * mean).clamp(0, 1)


def saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (_per_sample(f) * x + (1 - _per_sample(f)) * grey(x)).clamp(0, 1)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] → HSV with H in [0, 1) (torchvision's formulas)."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_div = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_div, (maxc - g) / cr_div, (maxc - b) / cr_div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack([h, s, maxc], dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV (H in [0, 1)) → RGB, the inverse of :func:`rgb_to_hsv`."""
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0, 1)
    q = (v * (1.0 - s * f)).clamp(0, 1)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0, 1)
    sector = torch.stack([i == k for k in range(6)], dim=1).to(x.dtype)  # [B, 6, H, W]
    r = torch.stack([v, q, p, p, t, v], 1)
    g = torch.stack([t, v, v, q, p, p], 1)
    b = torch.stack([p, p, t, v, v, q], 1)
    return torch.stack([(sector * c).sum(1) for c in (r, g, b)], dim=1)


def hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``shift`` [B] (a fraction of the colour circle, in [−½, ½])."""
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + shift.view(-1, 1, 1), 1.0)
    return hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], dim=1))


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample σ [B], reflect padding (torchvision's kernel)."""
    bsz, ch, hgt, wid = x.shape
    half = (kernel_size - 1) * 0.5
    t = torch.linspace(-half, half, kernel_size, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma[:, None].to(x.dtype)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(ch, 0)  # [B·C, k]
    pad = kernel_size // 2
    y = F.pad(x.reshape(1, bsz * ch, hgt, wid), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=bsz * ch)
    y = F.conv2d(y, k[:, None, :, None], groups=bsz * ch)
    return y.view(bsz, ch, hgt, wid)


def solarize(x: torch.Tensor) -> torch.Tensor:
    """Invert pixels at or above ½ (PIL's ImageOps.solarize at threshold 128)."""
    return torch.where(x >= 0.5, 1.0 - x, x)


def blur_kernel_size(sigma_max: float, side: int) -> int:
    """Odd kernel covering ±3σ, at most the largest odd size reflect padding allows."""
    k = 2 * math.ceil(3 * sigma_max) + 1
    return max(1, min(k, 2 * (side - 1) - 1 if side > 2 else 1) | 1)


# ---- the view pipeline ---------------------------------------------------------------------
def make_view(images: torch.Tensor, spec: ViewSpec, size: int, mean: torch.Tensor, std: torch.Tensor,
              rnd: BatchRandom) -> torch.Tensor:
    """A normalised float view ``[B, 3, size, size]`` of uint8 ``images`` ``[B, 3, H, W]``."""
    x = images.float().div_(255.0)
    boxes = crop_boxes(rnd.uniform(10, 4), spec.scale, spec.ratio)
    flip = rnd.uniform() < spec.flip
    x = resized_crop(x, boxes.to(x.dtype), flip, size)
    u = rnd.uniform(10)  # one row of uniforms per sample for the colour / blur steps
    if spec.jitter > 0:
        b, c, s, hh = spec.jitter_strength
        j = brightness(x, 1 + b * (2 * u[:, 1] - 1))
        j = contrast(j, 1 + c * (2 * u[:, 2] - 1))
        j = saturation(j, 1 + s * (2 * u[:, 3] - 1))
        j = hue(j, hh * (2 * u[:, 4] - 1))
        x = torch.where(_per_sample(u[:, 0] < spec.jitter), j, x)
    if spec.grey > 0:
        x = torch.where(_per_sample(u[:, 5] < spec.grey), grey(x).expand_as(x), x)
    if spec.blur > 0:
        lo, hi = (s_ * size / 224 for s_ in spec.blur_sigma)
        sigma = lo + (hi - lo) * u[:, 7]
        k = blur_kernel_size(hi, size)
        if k > 1:
            x = torch.where(_per_sample(u[:, 6] < spec.blur), gaussian_blur(x, sigma, k), x)
    if spec.solarize > 0:
        x = torch.where(_per_sample(u[:, 8] < spec.solarize), solarize(x), x)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
