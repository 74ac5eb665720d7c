import math

import numpy as np
import pytest
import torch

from vitscope.taps import ViTInfo
from vitscope.metrics.fourier import (EPS, FourierStats, full_from_half, half_diagonal, half_log_amplitude,
                                     relative_log_amplitude, tokens_to_maps)


def log_amplitude(maps: torch.Tensor) -> torch.Tensor:
    """The definition, as a reference: centred ``log(|FFT2(maps)| + ε)`` of the whole map."""
    f = torch.fft.fft2(maps.float(), dim=(-2, -1))
    return torch.fft.fftshift(torch.log(f.abs() + EPS), dim=(-2, -1))


def centred_log_amplitude(maps: torch.Tensor) -> torch.Tensor:
    """What FourierStats computes: the half spectrum, rebuilt."""
    return full_from_half(half_log_amplitude(maps), maps.shape[-1])


def test_frequency_axis_is_truthful_on_14x14():
    freqs, _ = half_diagonal(torch.zeros(14, 14))
    # 0, 1/7, ..., 6/7 on the centred half-diagonal, then Nyquist (1.0) from the corner
    np.testing.assert_allclose(freqs.numpy(), [k / 7 for k in range(7)] + [1.0])
    freqs_no, _ = half_diagonal(torch.zeros(14, 14), include_nyquist=False)
    assert freqs_no[-1] == pytest.approx(6 / 7)
    freqs_odd, _ = half_diagonal(torch.zeros(7, 7))
    np.testing.assert_allclose(freqs_odd.numpy(), [0, 2 / 7, 4 / 7, 6 / 7])


def test_constant_map_has_only_zero_frequency():
    maps = torch.full((1, 1, 8, 8), 3.0)
    _, v = half_diagonal(centred_log_amplitude(maps)[0, 0])
    rel = relative_log_amplitude(v)
    assert v[0] == pytest.approx(math.log(3.0 * 64 + EPS), rel=1e-5)
    assert torch.all(rel[1:] < -10)  # every other frequency is (numerically) empty


def test_checkerboard_energy_at_nyquist():
    i, j = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    board = ((-1.0) ** (i + j))[None, None]
    _, v = half_diagonal(centred_log_amplitude(board)[0, 0])
    rel = relative_log_amplitude(v)
    assert v[-1] == pytest.approx(math.log(64 + EPS), rel=1e-5)  # the (π, π) corner
    assert rel[-1] > 10 and torch.all(v[:-1] < -10)


def test_tokens_to_maps_is_row_major():
    x = torch.arange(6.0).reshape(1, 6, 1)
    assert torch.equal(tokens_to_maps(x, (2, 3))[0, 0], torch.tensor([[0.0, 1, 2], [3, 4, 5]]))


def test_fourier_stats_embedding_and_blocks():
    info = ViTInfo(depth=2, num_heads=1, embed_dim=3, num_prefix_tokens=1, grid_size=(4, 4), patch_size=(1, 1))
    m = FourierStats(info)
    x = torch.randn(4, 17, 3)
    m.update(0, "block_in", x)
    m.update(1, "block_in", x)  # ignored: only the embedding is read from block inputs
    m.update(0, "block_out", x)
    m.update(1, "block_out", x)
    r = m.compute()
    assert r["includes_nyquist"] and r["freqs_over_pi"][-1] == 1.0
    assert np.allclose(r["delta_log_amplitude"][0], r["delta_log_amplitude"][1])
    assert r["delta_log_amplitude"][0][0] == 0.0


@pytest.mark.parametrize("h, w", [(14, 14), (7, 7), (4, 6), (5, 8)])
def test_half_spectrum_rebuilds_the_full_one(h, w):
    # rfft2 + Hermitian symmetry == fft2 + fftshift, on even, odd and non-square grids
    maps = torch.randn(3, 5, h, w, generator=torch.Generator().manual_seed(h * w))
    np.testing.assert_allclose(full_from_half(half_log_amplitude(maps), w).numpy(), log_amplitude(maps).numpy(),
                               atol=1e-4)  # two float32 FFTs: a coefficient near 0 has a sensitive log
    with pytest.raises(ValueError, match="columns"):
        full_from_half(half_log_amplitude(maps), w + 2)


def test_fourier_stats_equals_the_full_fft_reference():
    info = ViTInfo(depth=1, num_heads=1, embed_dim=6, num_prefix_tokens=1, grid_size=(6, 6), patch_size=(2, 2))
    m = FourierStats(info)
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(4, 37, 6, generator=g), torch.randn(3, 37, 6, generator=g)]
    for x in xs:
        m.update(0, "block_in", x)
        m.update(0, "block_out", x * 2 + 1)
    ref = torch.cat([log_amplitude(tokens_to_maps(x[:, 1:], (6, 6))).mean(1) for x in xs]).double().mean(0)
    got = torch.tensor(m.compute()["mean_log_amplitude_spectrum"][0])
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5)


def test_non_square_grid_is_refused():
    with pytest.raises(ValueError, match="square"):
        FourierStats(ViTInfo(1, 1, 3, 1, (2, 4), (1, 1)))
