"""Frequency-band random noise (Park & Kim 2022; Park et al. 2023 Fig. 8b and F.2).

White noise is band-pass filtered in the 2-D Fourier domain so that only frequencies
``|ω|`` in ``[f - w/2, f + w/2)`` survive, then added to the images; the accuracy drop
per centre frequency ``f`` shows which frequencies a classifier is sensitive to.

Conventions (see docs/robustness.md):

- Frequencies are angular, in units of π: an ``n``-pixel axis has ``ω_k = 2k/n`` (·π)
  for the FFT index ``k``, so ``|ω| ∈ [0, 1]`` per axis and 1 is the Nyquist frequency.
- ``norm="max"``: the band is a square annulus on ``max(|ω_y|, |ω_x|)``, as the mask
  of Park & Kim's official ``FreqAttack`` (xxxnell/how-do-vits-work, ops/adversarial.py);
  ``norm="radial"``: a circular annulus on ``sqrt(ω_y² + ω_x²)``.
- The mask is symmetric under ``ω → -ω``, so the filtered noise is real.
- ``scale="band"``: each image's noise is rescaled to RMS ``strength`` over all its
  pixels and channels, the same energy in every band. ``scale="white"``: white noise
  of std ``strength`` is filtered and not rescaled (Park & Kim's code), so a band
  carries energy in proportion to the number of frequencies it holds.
- Noise lives in pixel units (images in [0, 1], before mean/std normalisation);
  :func:`add_pixel_noise` adds it to normalised inputs as ``x + n / std``, which is the
  same as normalising ``pixels + n``. No clamping: it would leak energy out of the band.
"""

from __future__ import annotations

import torch

BAND_NORMS = ("max", "radial")
NOISE_SCALES = ("band", "white")


def frequency_radius(height: int, width: int, norm: str = "max",
                     device: torch.device | str | None = None) -> torch.Tensor:
    """``[H, W]`` frequency magnitude (units of π) of each unshifted FFT coefficient.

    ``ω_y = 2·fftfreq(H)``, ``ω_x = 2·fftfreq(W)``; ``max(|ω_y|, |ω_x|)`` for ``norm="max"``,
    ``sqrt(ω_y² + ω_x²)`` for ``norm="radial"``.
    """
    if norm not in BAND_NORMS:
        raise ValueError(f"unknown band norm '{norm}'. Valid options are: {list(BAND_NORMS)}")
    fy = (torch.fft.fftfreq(height, device=device) * 2).abs()[:, None]
    fx = (torch.fft.fftfreq(width, device=device) * 2).abs()[None, :]
    if norm == "max":
        return torch.maximum(fy, fx)
    return torch.sqrt(fy**2 + fx**2)


def band_mask(height: int, width: int, center: float, band_width: float, norm: str = "max",
              device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean ``[H, W]`` mask of the FFT coefficients with ``center - bw/2 ≤ |ω| < center + bw/2``.

    ``center`` and ``band_width`` are in units of π. Adjacent centres spaced by
    ``band_width`` tile the spectrum without overlap (half-open bands; a 1e-9 tolerance
    keeps exactly representable edges such as ``2k/n = 0.05`` in the upper band).
    """
    if band_width <= 0:
        raise ValueError(f"band width must be positive, got {band_width}")
    r = frequency_radius(height, width, norm, device)
    lo, hi = center - band_width / 2, center + band_width / 2
    return (r >= lo - 1e-9) & (r < hi - 1e-9)


def band_limited_noise(shape: tuple[int, int, int, int], mask: torch.Tensor, strength: float,
                       scale: str = "band", generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise ``[B, C, H, W]`` whose spectrum lies inside ``mask`` (``[H, W]``, bool).

    ``n = IFFT2(mask · FFT2(z))`` (real, as the mask is symmetric) with ``z ~ N(0, 1)`` i.i.d.; then
    ``n · strength / RMS(n)`` per image (``scale="band"``) or ``n · strength``
    (``scale="white"``). Drawn on ``mask.device`` from ``generator``.
    """
    if scale not in NOISE_SCALES:
        raise ValueError(f"unknown noise scale '{scale}'. Valid options are: {list(NOISE_SCALES)}")
    if tuple(mask.shape) != tuple(shape[-2:]):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match image size {tuple(shape[-2:])}")
    if not bool(mask.any()):
        raise ValueError("the frequency band holds no FFT coefficient of this image size")
    z = torch.randn(shape, generator=generator, device=mask.device)
    h, w = shape[-2:]
    # the mask is symmetric under ω → -ω, so the half spectrum of rfft2 carries it exactly
    n = torch.fft.irfft2(torch.fft.rfft2(z) * mask[:, : w // 2 + 1], s=(h, w))
    if scale == "white":
        return n * strength
    rms = n.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    return n * (strength / rms)


def band_energy_fraction(noise: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image, the fraction of spectral energy ``Σ_mask |FFT2(n)|² / Σ |FFT2(n)|²`` (1 = all in band)."""
    power = torch.fft.fft2(noise.double()).abs().pow(2).sum(1)  # [B, H, W], summed over channels
    return (power * mask).sum((1, 2)) / power.sum((1, 2))


def add_pixel_noise(images: torch.Tensor, noise: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Add pixel-unit noise to mean/std-normalised images: ``(x - μ)/σ + n/σ = (x + n - μ)/σ``.

    ``images`` and ``noise`` are ``[B, C, H, W]``; ``std`` is the per-channel ``[C]`` σ.
    """
    return images + noise / std.view(1, -1, 1, 1).to(images)
