"""Band-limited noise: the spectrum sits in the band, the scaling is as documented."""

from __future__ import annotations

import pytest
import torch

from vitscope.perturbation.noise import (
    add_pixel_noise,
    band_energy_fraction,
    band_limited_noise,
    band_mask,
    frequency_radius,
)

FREQS = [round(0.1 * i, 1) for i in range(11)]


def test_frequency_radius_is_angular_in_units_of_pi():
    r = frequency_radius(8, 8, "max")
    assert r[0, 0] == 0  # DC
    assert r[0, 1] == pytest.approx(0.25)  # k = 1 of 8 → 2π/8 = 0.25π
    assert r[4, 0] == pytest.approx(1.0)  # Nyquist
    assert frequency_radius(8, 8, "radial")[1, 1] == pytest.approx(0.25 * 2**0.5)
    with pytest.raises(ValueError, match="Valid options are"):
        frequency_radius(8, 8, "l1")


def test_band_mask_hand_counts_32px():
    assert band_mask(32, 32, 0.0, 0.1).sum() == 1  # only DC within |ω| < 0.05π
    # [0.95π, 1.05π): only max(|ky|, |kx|) = 16 (Nyquist) → 32 + 32 - 1 coefficients
    assert band_mask(32, 32, 1.0, 0.1).sum() == 63
    # [0.05π, 0.15π): |k| ∈ {1, 2} → 5×5 square minus the DC
    assert band_mask(32, 32, 0.1, 0.1).sum() == 24


@pytest.mark.parametrize("norm", ["max", "radial"])
def test_adjacent_bands_tile_the_spectrum(norm):
    masks = torch.stack([band_mask(24, 32, f, 0.1, norm) for f in FREQS + [1.1, 1.2, 1.3, 1.4, 1.5]])
    assert torch.equal(masks.sum(0), torch.ones(24, 32, dtype=torch.long))  # each coefficient in one band
    mask = band_mask(24, 32, 0.5, 0.1, norm)
    mirrored = mask.flip(0).flip(1).roll((1, 1), (0, 1))  # index k → -k mod n
    assert torch.equal(mask, mirrored)  # symmetric, so the filtered noise is real


@pytest.mark.parametrize("scale", ["band", "white"])
@pytest.mark.parametrize("norm", ["max", "radial"])
@pytest.mark.parametrize("freq", [0.0, 0.3, 0.7, 1.0])
def test_noise_energy_lies_in_the_band(freq, norm, scale):
    mask = band_mask(32, 32, freq, 0.1, norm)
    g = torch.Generator().manual_seed(0)
    noise = band_limited_noise((4, 3, 32, 32), mask, 0.1, scale, g)
    frac = band_energy_fraction(noise, mask)
    assert torch.allclose(frac, torch.ones(4, dtype=torch.float64), atol=1e-9)
    # the check can fail: unfiltered white noise has only the band's share of the energy
    white = torch.randn(4, 3, 32, 32, generator=g)
    assert float(band_energy_fraction(white, mask).mean()) < 0.5


def test_band_scale_gives_rms_strength_and_white_scale_keeps_band_share():
    mask = band_mask(64, 64, 0.5, 0.1)
    g = torch.Generator().manual_seed(1)
    band = band_limited_noise((8, 3, 64, 64), mask, 0.2, "band", g)
    assert torch.allclose(band.pow(2).mean((1, 2, 3)).sqrt(), torch.full((8,), 0.2), atol=1e-6)
    white = band_limited_noise((64, 3, 64, 64), mask, 0.2, "white", g)
    share = mask.float().mean()  # expected variance fraction of filtered white noise
    assert float(white.pow(2).mean()) == pytest.approx(0.04 * float(share), rel=0.05)


def test_noise_is_seeded_and_zero_at_zero_strength():
    mask = band_mask(16, 16, 0.5, 0.2)
    a = band_limited_noise((2, 3, 16, 16), mask, 0.1, generator=torch.Generator().manual_seed(5))
    b = band_limited_noise((2, 3, 16, 16), mask, 0.1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.count_nonzero(band_limited_noise((2, 3, 16, 16), mask, 0.0)) == 0


def test_noise_errors():
    with pytest.raises(ValueError, match="no FFT coefficient"):
        band_limited_noise((1, 3, 8, 8), band_mask(8, 8, 0.1, 0.1), 0.1)  # 8 px: step 0.25π
    with pytest.raises(ValueError, match="Valid options are"):
        band_limited_noise((1, 3, 8, 8), band_mask(8, 8, 0.0, 0.1), 0.1, "pink")
    with pytest.raises(ValueError, match="does not match"):
        band_limited_noise((1, 3, 8, 8), band_mask(16, 16, 0.0, 0.1), 0.1)


def test_pixel_noise_equals_noise_added_before_normalisation():
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.3])
    pixels = torch.rand(2, 3, 8, 8)
    noise = torch.randn(2, 3, 8, 8) * 0.1

    def norm(x):
        return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)

    assert torch.allclose(add_pixel_noise(norm(pixels), noise, std), norm(pixels + noise), atol=1e-6)


@pytest.mark.parametrize("h, w", [(31, 24), (24, 33)])
def test_odd_and_non_square_sizes(h, w):
    mask = band_mask(h, w, 0.6, 0.1, "radial")
    noise = band_limited_noise((2, 3, h, w), mask, 0.1, generator=torch.Generator().manual_seed(2))
    assert noise.shape == (2, 3, h, w)
    assert torch.allclose(band_energy_fraction(noise, mask), torch.ones(2, dtype=torch.float64), atol=1e-9)
