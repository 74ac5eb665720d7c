import numpy as np
import pytest
import torch

from vitscope.metrics.spectrum import SpectrumStats, delta_log, scatter_singular_values, token_singular_values
from vitscope.taps import ViTInfo


def test_token_spectrum_of_known_low_rank_matrix():
    # centred rank-2 matrix with singular values 6 and 2
    u = torch.linalg.qr(torch.randn(8, 2, dtype=torch.float64))[0]
    u = u - u.mean(0)  # keep it centred across tokens
    u = torch.linalg.qr(u)[0]
    v = torch.linalg.qr(torch.randn(5, 2, dtype=torch.float64))[0]
    x = u @ torch.diag(torch.tensor([6.0, 2.0], dtype=torch.float64)) @ v.T
    x = x - x.mean(0)
    expected = torch.linalg.svdvals(x)
    sv = token_singular_values(x[None])[0]
    assert sv.shape == (5,)
    assert torch.allclose(sv, expected, atol=1e-6)
    assert sv[0] == pytest.approx(6.0, rel=1e-6) and sv[2:].abs().max() < 1e-6


def test_token_spectrum_is_translation_invariant():
    x = torch.randn(2, 9, 4)
    assert torch.allclose(token_singular_values(x), token_singular_values(x + 5.0), atol=1e-3)


def test_scatter_singular_values_equal_svd_of_centred_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6)) + 3.0
    xt = torch.tensor(x)
    sv = scatter_singular_values(xt.sum(0), xt.T @ xt, 30)
    expected = np.linalg.svd(x - x.mean(0), compute_uv=False)
    np.testing.assert_allclose(sv.numpy(), expected, rtol=1e-8)


def test_scatter_reports_only_the_rank_the_sample_allows():
    x = torch.randn(4, 10, dtype=torch.float64)
    assert scatter_singular_values(x.sum(0), x.T @ x, 4).shape == (3,)


def test_delta_log_relative_to_largest_and_second():
    v = torch.tensor([4.0, 2.0, 1.0])
    assert torch.allclose(delta_log(v), torch.log(torch.tensor([1.0, 0.5, 0.25])))
    assert torch.allclose(delta_log(v, 1), torch.log(torch.tensor([2.0, 1.0, 0.5])))


def test_spectrum_stats_streamed_equal_one_shot():
    info = ViTInfo(depth=1, num_heads=1, embed_dim=3, num_prefix_tokens=1, grid_size=(2, 2), patch_size=(1, 1))
    x_in, x_out = torch.randn(12, 5, 3), torch.randn(12, 5, 3)
    a, b = SpectrumStats(info), SpectrumStats(info)
    a.update(0, "block_in", x_in)
    a.update(0, "block_out", x_out)
    for i in range(0, 12, 5):
        b.update(0, "block_in", x_in[i:i + 5])
        b.update(0, "block_out", x_out[i:i + 5])
    ra, rb = a.compute(), b.compute()
    for k in ("token_log_sv", "image_log_sv"):
        np.testing.assert_allclose(ra[k], rb[k], atol=1e-9)
    gap = x_out[:, 1:].double().mean(1)
    np.testing.assert_allclose(np.exp(ra["image_log_sv"][1]),
                               np.linalg.svd((gap - gap.mean(0)).numpy(), compute_uv=False), rtol=1e-6)


def test_token_spectrum_cap_uses_first_images_only():
    info = ViTInfo(depth=1, num_heads=1, embed_dim=3, num_prefix_tokens=0, grid_size=(2, 2), patch_size=(1, 1))
    x = torch.randn(10, 4, 3)
    capped, first = SpectrumStats(info, token_images=4), SpectrumStats(info, token_images=None)
    for chunk in x.split(3):
        capped.update(0, "block_in", chunk)
        capped.update(0, "block_out", chunk)
    first.update(0, "block_in", x[:4])
    first.update(0, "block_out", x[:4])
    rc, rf = capped.compute(), first.compute()
    assert rc["token_images_used"] == 4 and rc["images"] == 10
    np.testing.assert_allclose(rc["token_log_sv"][1], rf["token_log_sv"][1], rtol=1e-12)


def test_finite_eigvalsh_gives_nan_for_a_nonfinite_matrix_instead_of_failing():
    from vitscope.metrics.spectrum import finite_eigvalsh

    a = torch.stack([torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64),
                     torch.tensor([[float("nan"), 0.0], [0.0, 1.0]], dtype=torch.float64)])
    ev = finite_eigvalsh(a)
    assert torch.allclose(ev[0], torch.tensor([1.0, 3.0], dtype=torch.float64))  # eigenvalues of [[2,1],[1,2]]
    assert torch.isnan(ev[1]).all()


def test_token_spectrum_leaves_float64_input_untouched():
    x = torch.randn(2, 6, 4, dtype=torch.float64) + 3.0
    before = x.clone()
    sv = token_singular_values(x)
    assert torch.equal(x, before)
    np.testing.assert_allclose(sv.numpy(), np.linalg.svd((before - before.mean(1, keepdim=True)).numpy(),
                                                        compute_uv=False), rtol=1e-9)


@pytest.mark.parametrize("shape, dtype", [((5, 7, 7), torch.float64), ((2, 3, 6, 6), torch.float64),
                                          ((4, 9, 9), torch.float32), ((1, 5, 5), torch.float64)])
def test_batched_eigvalsh_on_the_cpu_equals_torch(shape, dtype, monkeypatch):
    from vitscope.metrics.spectrum import batched_eigvalsh

    torch.manual_seed(3)
    x = torch.randn(*shape, dtype=dtype)
    a = x @ x.mT
    with torch.inference_mode():
        for threads in (1, 2, 3):  # one solve per thread: the batch split 1, 2 or 3 ways
            monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
            ev = batched_eigvalsh(a)
            assert ev.dtype == dtype and ev.shape == shape[:-1]
            tol = 1e-10 if dtype == torch.float64 else 1e-4
            torch.testing.assert_close(ev, torch.linalg.eigvalsh(a), rtol=tol, atol=tol * a.abs().max().item())


def test_token_rows_are_evenly_spaced_over_the_announced_run_whatever_the_batches():
    info = ViTInfo(depth=1, num_heads=1, embed_dim=3, num_prefix_tokens=0, grid_size=(2, 2), patch_size=(1, 1))
    stats = SpectrumStats(info, token_images=4)
    stats.expect_images(10)
    # ⌊(j+1)·4/10⌋ > ⌊j·4/10⌋ at j = 2, 4, 7, 9: by hand
    assert stats.token_rows(0, 10, 0) == [2, 4, 7, 9]
    picked, start = [], 0
    for size in (3, 1, 4, 2):  # the same positions, batch by batch
        picked += [start + r for r in stats.token_rows(start, size, len(picked))]
        start += size
    assert picked == [2, 4, 7, 9]
    assert stats.token_rows(10, 5, 4) == []  # budget spent (more images than announced)
    first = SpectrumStats(info, token_images=4)  # size unknown: the first images
    assert first.token_rows(0, 3, 0) == [0, 1, 2] and first.token_rows(3, 3, 3) == [0]
    small = SpectrumStats(info, token_images=4)
    small.expect_images(3)  # fewer images than the budget: every one
    assert small.token_rows(0, 3, 0) == [0, 1, 2]


def test_spread_token_spectrum_equals_the_mean_over_those_images():
    info = ViTInfo(depth=1, num_heads=1, embed_dim=3, num_prefix_tokens=0, grid_size=(2, 2), patch_size=(1, 1))
    torch.manual_seed(5)
    x = torch.randn(10, 4, 3) * torch.arange(1, 11).view(10, 1, 1)  # images differ in scale
    spread = SpectrumStats(info, token_images=4)
    spread.expect_images(10)
    for chunk in x.split(4):
        spread.update(0, "block_in", chunk)
        spread.update(0, "block_out", chunk)
    r = spread.compute()
    expected = token_singular_values(x[[2, 4, 7, 9]]).mean(0)
    np.testing.assert_allclose(np.exp(r["token_log_sv"][1]), expected.numpy(), rtol=1e-10)
    assert r["token_images_used"] == 4 and r["token_image_choice"] == "evenly spaced over the run"


def test_token_spectrum_of_a_nonfinite_image_is_nan_and_the_others_unchanged():
    torch.manual_seed(6)
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    good = token_singular_values(x)
    x[1, 2, 3] = float("inf")
    sv = token_singular_values(x)
    assert torch.isnan(sv[1]).all()
    torch.testing.assert_close(sv[[0, 2]], good[[0, 2]], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tokens, width", [(9, 5), (5, 9)])
def test_gram_eigenvalues_on_the_cpu_cores_equal_torch(tokens, width, monkeypatch):
    from vitscope.metrics.spectrum import gram_eigenvalues

    torch.manual_seed(7)
    x = torch.randn(5, tokens, width, dtype=torch.float64)
    gram = x @ x.mT if tokens <= width else x.mT @ x
    for threads in (1, 2, 3):
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
        ev = gram_eigenvalues(x)
        assert ev.shape == (5, min(tokens, width))
        torch.testing.assert_close(ev, torch.linalg.eigvalsh(gram), rtol=1e-10, atol=1e-10)


def test_scatter_singular_values_of_several_moments_at_once():
    torch.manual_seed(8)
    xs = torch.randn(3, 20, 4, dtype=torch.float64)
    together = scatter_singular_values(xs.sum(1), xs.mT @ xs, 20)
    for i in range(3):
        torch.testing.assert_close(together[i], scatter_singular_values(xs[i].sum(0), xs[i].T @ xs[i], 20))


def _embedding_like(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 tokens [n, 1 + 16, 96] of rank ≤ 48 per image mean (a 4×4×3-pixel patch projection)
    and a full-rank later depth."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(n, 16, 48, generator=g)
    w = torch.randn(48, 96, generator=g) / 7
    low = torch.cat([torch.zeros(n, 1, 96), pixels @ w], 1).float()
    full = torch.cat([torch.zeros(n, 1, 96), torch.randn(n, 16, 96, generator=g)], 1).float()
    return low, full


def test_numerical_rank_counts_only_values_above_rounding():
    from vitscope.metrics.spectrum import numerical_rank, rank_tolerance

    low, full = _embedding_like(300)
    rows = []
    for x in (low, full):
        g = x[:, 1:].double().mean(1)
        rows.append(torch.linalg.svdvals(g - g.mean(0)))
    sv = torch.stack(rows)
    assert numerical_rank(sv, 300, 96, torch.float32) == [48, 96]
    # by hand: σ_max (√96 · 2⁻²³ + √(96 · 2⁻⁵²)); bf16's coarser ε cuts far more
    assert rank_tolerance(2.0, 300, 96, torch.float32) == pytest.approx(2 * (96 ** 0.5 * 2 ** -23 + (96 * 2 ** -52) ** 0.5))
    assert rank_tolerance(1.0, 300, 96, torch.bfloat16) > 100 * rank_tolerance(1.0, 300, 96, torch.float32)
    assert numerical_rank(torch.zeros(2, 0), 1, 96, torch.float32) == [0, 0]


def test_image_volume_within_the_numerical_rank_does_not_depend_on_the_solver(monkeypatch):
    """Park Fig. 7 bottom rests on the values above the numerical rank: numpy's LAPACK and torch's
    eigen-solver give the same ranks and the same values there (the noise below may differ)."""
    import vitscope.metrics.spectrum as S

    info = ViTInfo(depth=1, num_heads=1, embed_dim=96, num_prefix_tokens=1, grid_size=(4, 4), patch_size=(4, 4))
    low, full = _embedding_like(400, seed=1)

    def run() -> dict:
        m = SpectrumStats(info, token_images=0)
        m.update(0, "block_in", low)
        m.update(0, "block_out", full)
        return m.compute()

    by_numpy = run()
    monkeypatch.setattr(S, "batched_eigvalsh", torch.linalg.eigvalsh)
    by_torch = run()
    assert by_numpy["image_numerical_rank"] == by_torch["image_numerical_rank"] == [48, 96]
    assert by_numpy["activation_dtype"] == "float32"
    for depth, r in enumerate(by_numpy["image_numerical_rank"]):
        np.testing.assert_allclose(by_numpy["image_log_sv"][depth][:r], by_torch["image_log_sv"][depth][:r],
                                   atol=1e-6)
