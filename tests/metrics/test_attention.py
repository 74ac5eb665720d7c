import math

import pytest
import torch

from vitscope.capture import ViTInfo
from vitscope.metrics.attention import (
    AttentionStats, attention_distance, attention_entropy, attention_nmi, attention_statistics, grid_distances,
    patch_attention, xlogx,
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
