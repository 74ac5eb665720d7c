import math

import pytest
import torch

from vitscope.taps import ViTInfo, window_valid
from vitscope.metrics.attention import (
    AttentionStats, attention_distance, attention_entropy, attention_nmi, attention_statistics,
    class_attention_entropy, grid_distances, patch_attention, window_attention_statistics, xlogx,
)


def test_grid_distances_in_pixels():
    d = grid_distances((2, 3), (16, 16))
    # patch 0 at (0,0), patch 5 at (1,2): sqrt(16² + 32²)
    assert d[0, 5] == pytest.approx(math.hypot(16, 32))
    assert d[1, 4] == pytest.approx(16.0)
    assert torch.all(d.diagonal() == 0)


def test_uniform_attention_nmi_zero_distance_mean_grid_distance():
    p = 9
    a = torch.full((1, 2, p, p), 1 / p)
    dist = grid_distances((3, 3), (4, 4))
    assert attention_nmi(a).abs().max() < 1e-6
    # by hand: the mean over all ordered pairs (including q = k) of the pixel distances
    assert attention_distance(a, dist)[0, 0] == pytest.approx(dist.mean().item(), rel=1e-6)
    assert attention_entropy(a)[0, 0] == pytest.approx(math.log(p), rel=1e-6)


def test_identity_attention_nmi_one_distance_zero():
    a = torch.eye(16).expand(2, 3, 16, 16)
    assert torch.allclose(attention_nmi(a), torch.ones(2, 3), atol=1e-6)
    assert attention_distance(a, grid_distances((4, 4), (16, 16))).abs().max() == 0
    assert attention_entropy(a).abs().max() == 0


def test_collapsed_attention_all_queries_same_key_is_nmi_zero():
    a = torch.zeros(1, 1, 4, 4)
    a[..., 2] = 1.0
    assert attention_nmi(a).item() == 0.0


def test_nmi_matches_definition_on_random_map():
    torch.manual_seed(0)
    a = torch.softmax(torch.randn(5, 5, dtype=torch.float64) * 2, -1)
    n = 5
    pqk = a / n
    pk = pqk.sum(0)
    mi = sum(pqk[q, k] * math.log(pqk[q, k] / ((1 / n) * pk[k])) for q in range(n) for k in range(n))
    hk = -sum(pk[k] * math.log(pk[k]) for k in range(n))
    expected = mi / math.sqrt(math.log(n) * hk)
    assert attention_nmi(a).item() == pytest.approx(float(expected), rel=1e-9)


def test_prefix_tokens_dropped_and_rows_renormalised():
    a = torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.5, 0.0], [0.2, 0.0, 0.8]])
    pa = patch_attention(a, 1)
    assert torch.allclose(pa, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


def test_stats_streamed_equal_one_shot():
    info = ViTInfo(depth=2, num_heads=3, embed_dim=12, num_prefix_tokens=1, grid_size=(2, 2), patch_size=(8, 8))
    torch.manual_seed(0)
    attn = torch.softmax(torch.randn(10, 2, 3, 5, 5) * 3, -1)
    one, streamed = AttentionStats(info), AttentionStats(info)
    for layer in range(2):
        one.update(layer, "attn", attn[:, layer])
        for chunk in attn[:, layer].split(3):
            streamed.update(layer, "attn", chunk)
    r1, r2 = one.compute(), streamed.compute()
    for key in ("distance_per_head", "nmi_per_head", "entropy_per_head", "nmi_std_over_heads"):
        assert torch.allclose(torch.tensor(r1[key]), torch.tensor(r2[key]), atol=1e-12)
    # per-image averaging: the mean of per-image NMI, not the NMI of the mean map
    per_image = attention_nmi(patch_attention(attn[:, 0], 1)).mean(0)
    assert torch.allclose(torch.tensor(r1["nmi_per_head"][0], dtype=torch.float64), per_image.double(), atol=1e-6)


def test_xlogx_equals_xlogy_with_zero():
    a = torch.tensor([0.0, 1e-30, 0.25, 1.0, 3.0])
    assert xlogx(a)[0].item() == 0.0 and xlogx(a)[3].item() == 0.0  # 0·log 0 and 1·log 1
    assert torch.allclose(xlogx(a), torch.special.xlogy(a, a), rtol=1e-6, atol=1e-36)
    assert xlogx(torch.tensor(0.5)).item() == pytest.approx(0.5 * math.log(0.5), rel=1e-6)


def test_fused_statistics_equal_separate_formulas():
    torch.manual_seed(1)
    a = torch.softmax(torch.randn(3, 2, 10, 10, dtype=torch.float64) * 2, -1)  # 1 prefix token, 3×3 patches
    a[0, 1, 4] = 0.0
    a[0, 1, 4, 0] = 1.0  # one query attends only to CLS: its patch row is empty
    dist = grid_distances((3, 3), (8, 8))
    d, nmi, ent = (v.double() for v in attention_statistics(a, 1, dist))  # float32 inside
    pa = patch_attention(a, 1).double()
    assert torch.allclose(d, attention_distance(pa, dist), atol=1e-5)
    assert torch.allclose(nmi, attention_nmi(pa), atol=1e-6)
    assert torch.allclose(ent, attention_entropy(pa), atol=1e-6)
    # by hand on the identity over patches: distance 0, NMI 1, entropy 0
    eye = torch.eye(10).expand(1, 1, 10, 10)
    d, nmi, ent = attention_statistics(eye, 1, dist)
    assert d.item() == 0 and nmi.item() == pytest.approx(1.0, abs=1e-6) and ent.abs().item() < 1e-6


def test_compiled_statistics_equal_eager(caplog):
    """``AttentionStats(compile=True)`` (torch.compile, Inductor) gives the eager results,
    over two batch sizes (a recompile) and with zero attention and an all-CLS row."""
    info = ViTInfo(depth=1, num_heads=2, embed_dim=8, num_prefix_tokens=1, grid_size=(3, 3), patch_size=(16, 16))
    torch.manual_seed(2)
    attn = torch.softmax(torch.randn(7, 2, 10, 10) * 4, -1)
    attn[0, 0, 3] = 0.0
    attn[0, 0, 3, 0] = 1.0
    attn[1, 1, :, 5] = 0.0
    eager, fast = AttentionStats(info), AttentionStats(info, compile=True)
    with caplog.at_level("WARNING", logger="vitscope.runtime"):
        for chunk in attn.split(4):  # 4 then 3 images
            eager.update(0, "attn", chunk)
            fast.update(0, "attn", chunk)
    fell_back = [r for r in caplog.records if r.name == "vitscope.runtime"]
    assert not fell_back, "torch.compile fell back to eager"  # the compiled kernels really ran
    r1, r2 = eager.compute(), fast.compute()
    for key in ("distance_per_head", "nmi_per_head", "entropy_per_head"):
        assert torch.allclose(torch.tensor(r1[key]), torch.tensor(r2[key]), rtol=1e-5, atol=1e-5), key


def windows_uniform_over_all_positions(batch: int, n_windows: int, heads: int, t: int) -> torch.Tensor:
    """``[B, W, H, T, T]`` attention uniform over every position of each window, padding included."""
    return torch.full((batch, n_windows, heads, t, t), 1 / t)


def test_uniform_windows_without_padding_by_hand():
    """4×4 grid, 2×2 windows, patch 16, uniform inside each window: every query sees its 4 window
    positions at distances 0, 16, 16, 16√2; H(k|q) = log 4; p(k) = 1/16, so NMI = log(16/4) / log 16."""
    valid = window_valid((4, 4), 2)
    assert valid.all() and valid.shape == (4, 4)
    d, nmi, ent = window_attention_statistics(windows_uniform_over_all_positions(2, 4, 3, 4),
                                              grid_distances((2, 2), (16, 16)), valid)
    assert d.shape == (2, 3)
    assert torch.allclose(d, torch.full_like(d, 16 * (2 + math.sqrt(2)) / 4), rtol=1e-6)
    assert torch.allclose(ent, torch.full_like(ent, math.log(4)), rtol=1e-6)
    assert torch.allclose(nmi, torch.full_like(nmi, 0.5), rtol=1e-6)


def test_padded_windows_drop_padding_by_hand():
    """3×3 grid in 2×2 windows, padded to 4×4: the windows hold 4, 2 (a column), 2 (a row) and 1 patch.
    Attention uniform over all 4 positions, padding included, renormalised over the patches: per query
    uniform over its window's patches. By hand, over the 9 patches (patch 8 px):
    d̄ = 8·((2 + √2) + 1 + 1 + 0)/9; H(k|q) = (4 log 4 + 2 log 2 + 2 log 2 + 0)/9 = (4/3) log 2;
    p(k) = 1/9 for every patch, so H(k) = log 9 and NMI = (log 9 − (4/3) log 2)/log 9."""
    valid = window_valid((3, 3), 2)
    assert valid.tolist() == [[True] * 4, [True, False, True, False], [True, True, False, False],
                              [True, False, False, False]]
    d, nmi, ent = window_attention_statistics(windows_uniform_over_all_positions(1, 4, 1, 4),
                                              grid_distances((2, 2), (8, 8)), valid)
    assert d.item() == pytest.approx(8 * (4 + math.sqrt(2)) / 9, rel=1e-6)
    assert ent.item() == pytest.approx(4 / 3 * math.log(2), rel=1e-6)
    assert nmi.item() == pytest.approx((math.log(9) - 4 / 3 * math.log(2)) / math.log(9), rel=1e-6)


def windows_as_one_map(attn: torch.Tensor, grid: tuple[int, int], window: int) -> torch.Tensor:
    """``[B, W, H, T, T]`` windowed attention → the ``[B, H, n, n]`` map over the image's patches that
    it is (zero between windows, padding dropped), built position by position."""
    (h, w), per_row = grid, -(-grid[1] // window)
    b, n_windows, heads, t, _ = attn.shape
    full = torch.zeros(b, heads, h * w, h * w, dtype=attn.dtype)
    place = {}  # (window, position) -> patch index on the image grid
    for win in range(n_windows):
        for pos in range(t):
            y, x = win // per_row * window + pos // window, win % per_row * window + pos % window
            if y < h and x < w:
                place[win, pos] = y * w + x
    for (win, q), iq in place.items():
        for (win_k, k), ik in place.items():
            if win_k == win:
                full[:, :, iq, ik] = attn[:, win, :, q, k]
    return full


def test_windowed_statistics_are_those_of_the_image_map_the_windows_make():
    """On random attention with padding, the windowed statistics equal :func:`attention_statistics`
    of the whole-image map, with distances measured on the image grid."""
    torch.manual_seed(0)
    grid, window, patch = (5, 4), 3, (8, 8)  # padded to 6×6: 4 windows, partly padding
    attn = torch.softmax(torch.randn(2, 4, 3, 9, 9, dtype=torch.float64) * 2, -1)
    full = windows_as_one_map(attn, grid, window)
    expected = attention_statistics(full, 0, grid_distances(grid, patch))
    got = window_attention_statistics(attn, grid_distances((window, window), patch), window_valid(grid, window))
    for e, g, name in zip(expected, got, ("distance", "nmi", "entropy")):
        assert torch.allclose(g.double(), e.double(), rtol=1e-5, atol=1e-6), name  # float32 inside both
    # a window's distances never exceed its diagonal
    assert got[0].max() <= 8 * math.hypot(window - 1, window - 1)


def test_class_attention_entropy_by_hand():
    """The class token's own key is dropped: weights 0.5 on itself, 0.25, 0.25, 0, 0 on the patches
    leave [0.5, 0.5, 0, 0]: entropy log 2; uniform over 4 patches: log 4."""
    a = torch.tensor([[[[0.5, 0.25, 0.25, 0.0, 0.0]]], [[[0.2, 0.2, 0.2, 0.2, 0.2]]]])
    assert torch.allclose(class_attention_entropy(a), torch.tensor([[math.log(2)], [math.log(4)]]), rtol=1e-6)


def test_stats_route_windowed_and_class_attention_layers():
    """Layer 0 windowed (2×2 of a 4×4 grid), layer 1 global, layer 2 a class-attention block:
    each gets its own statistics, and the class attention is reported on its own, labelled."""
    info = ViTInfo(depth=2, num_heads=2, embed_dim=8, num_prefix_tokens=0, grid_size=(4, 4), patch_size=(16, 16),
                   window_sizes=(2, 0), class_attention_depth=1)
    stats = AttentionStats(info)
    stats.update(0, "attn", windows_uniform_over_all_positions(3, 4, 2, 4))
    stats.update(1, "attn", torch.eye(16).expand(3, 2, 16, 16))
    cls = torch.zeros(3, 2, 1, 17)
    cls[..., 0, 1:5] = 0.25
    stats.update(2, "attn", cls)
    r = stats.compute()
    assert r["distance"][0] == pytest.approx(16 * (2 + math.sqrt(2)) / 4, rel=1e-6)
    assert r["nmi"][0] == pytest.approx(0.5, rel=1e-6) and r["nmi"][1] == pytest.approx(1.0, abs=1e-6)
    assert r["distance"][1] == 0 and len(r["distance"]) == 2 and r["window_sizes"] == [2, 0]
    ca = r["class_attention"]
    assert ca["labels"] == ["class-attention block 0"] and ca["max_entropy"] == pytest.approx(math.log(16))
    assert ca["entropy_per_head"] == [[pytest.approx(math.log(4))] * 2]


def test_window_attention_map_is_what_the_window_statistics_measure():
    """SAM: a 5×5 grid in 2×2 windows (padded to 6×6, 9 windows). The map the windows make over the
    image gives, with the plain definitions, the window statistics' distance, NMI and entropy."""
    from vitscope.metrics.attention import (attention_statistics, grid_distances, window_attention_map,
                                            window_attention_statistics)
    from vitscope.taps import window_valid

    grid, window, patch = (5, 5), 2, (8, 8)
    attn = torch.randn(3, 9, 2, 4, 4, dtype=torch.float64).softmax(-1)  # [B, W, H, T, T]
    full = window_attention_map(attn, grid, window)
    assert full.shape == (3, 2, 25, 25)
    torch.testing.assert_close(full.sum(-1), torch.ones_like(full.sum(-1)))  # every patch query, renormalised
    assert full[0, 0, 0, 2] == 0 and full[0, 0, 0, 1] > 0  # patch (0,0) attends inside its window only
    got = attention_statistics(full, 0, grid_distances(grid, patch))
    want = window_attention_statistics(attn, grid_distances((window, window), patch), window_valid(grid, window))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w.to(g))
