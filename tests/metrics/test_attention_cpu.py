"""The numba attention kernel against the PyTorch statistics (float64), edge cases included."""

import math

import pytest
import torch

from vitscope.taps import ViTInfo
from vitscope.metrics.attention import (
    AttentionStats, attention_distance, attention_entropy, attention_nmi, grid_distances, nmi_from_marginal,
    patch_attention, xlogx,
)
from vitscope.metrics.attention_cpu import patch_row_sums


def kernel_statistics(attn, logits, p, dist):
    distance, entropy, pk = patch_row_sums(attn, logits, p, dist)
    return distance, nmi_from_marginal(pk, entropy), entropy


def reference(attn, p, dist):
    """The separate formulas in float64 on the renormalised patch map."""
    a = attn[..., p:, p:].double()
    a = a / a.sum(-1, keepdim=True).clamp_min(1e-300)
    return attention_distance(a, dist.double()), attention_nmi(a), attention_entropy(a)


@pytest.mark.parametrize("prefix", [0, 1, 5])
def test_kernel_equals_pytorch_statistics(prefix):
    torch.manual_seed(prefix)
    grid = (4, 5)
    n = prefix + 20
    logits = torch.randn(3, 4, n, n) * torch.tensor([0.3, 2.0, 6.0, 12.0])[:, None, None]  # flat to peaked
    attn = logits.softmax(-1)
    dist = grid_distances(grid, (8, 8)).float()
    got = kernel_statistics(attn, logits, prefix, dist)
    for g, r, name in zip(got, reference(attn, prefix, dist), ("distance", "nmi", "entropy")):
        assert g.shape == (3, 4), name
        torch.testing.assert_close(g, r, rtol=1e-5, atol=2e-5, msg=name)


def test_hand_cases_uniform_and_identity():
    p, side = 1, 3
    dist = grid_distances((side, side), (4, 4)).float()
    n = p + side * side
    uniform = torch.zeros(1, 1, n, n)  # equal scores: uniform over all keys, CLS included
    d, nmi, ent = kernel_statistics(uniform.softmax(-1), uniform, p, dist)
    assert d.item() == pytest.approx(dist.double().mean().item(), rel=1e-6)  # mean over all patch pairs
    assert ent.item() == pytest.approx(math.log(side * side), abs=1e-6) and abs(nmi.item()) < 1e-6
    sharp = torch.full((1, 1, n, n), -1e4).diagonal_scatter(torch.zeros(1, 1, n), dim1=-2, dim2=-1)
    d, nmi, ent = kernel_statistics(sharp.softmax(-1), sharp, p, dist)  # each patch attends to itself
    assert d.item() == 0 and ent.abs().item() < 1e-6 and nmi.item() == pytest.approx(1.0, abs=1e-6)


def test_masked_keys_rows_on_cls_only_and_far_diagonal():
    """Scores of −inf (weights exactly 0), a row with no weight on patches, and rows whose
    own and first weights are far below their largest (lse from the largest)."""
    torch.manual_seed(3)
    p, grid = 1, (3, 3)
    n = p + 9
    logits = torch.randn(2, 2, n, n) * 3
    logits[0, 0, 2, 4:7] = float("-inf")  # masked keys
    logits[0, 1, 5, p:] = float("-inf")  # attends to CLS only: no patch weight, contributes 0
    logits[1, 0, :, :] = torch.randn(n, n)
    logits[1, 0, 3, 3] = -60.0  # its own weight ≈ e^-60 of the largest
    logits[1, 0, 3, 0] = -60.0  # and the first key's too
    logits[1, 0, 3, 7] = 25.0
    attn = logits.softmax(-1)
    assert attn[0, 1, 5, p:].sum() == 0 and attn[0, 0, 2, 4] == 0
    dist = grid_distances(grid, (16, 16)).float()
    got = kernel_statistics(attn, logits, p, dist)
    for g, r, name in zip(got, reference(attn, p, dist), ("distance", "nmi", "entropy")):
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g, r, rtol=1e-5, atol=2e-5, msg=name)


def test_nan_row_gives_nan_like_pytorch():
    n = 5
    logits = torch.randn(1, 2, n, n)
    attn = logits.softmax(-1)
    attn[0, 1, 2] = float("nan")
    d, nmi, ent = kernel_statistics(attn, logits, 1, grid_distances((2, 2), (8, 8)).float())
    assert torch.isfinite(d[0, 0]) and torch.isnan(d[0, 1]) and torch.isnan(ent[0, 1])
    assert torch.isnan(reference(attn, 1, grid_distances((2, 2), (8, 8)))[0][0, 1])


def test_stats_with_logits_equal_stats_without():
    """``AttentionStats`` fed ``attn_logits`` then ``attn`` (the kernel) gives what it gives
    from ``attn`` alone (PyTorch), streamed over two batches."""
    info = ViTInfo(depth=2, num_heads=3, embed_dim=12, num_prefix_tokens=1, grid_size=(3, 3), patch_size=(8, 8))
    torch.manual_seed(4)
    logits = torch.randn(7, 2, 3, 10, 10) * 4
    with_logits, plain = AttentionStats(info), AttentionStats(info)
    assert with_logits.taps == ("attn_logits", "attn")
    for layer in range(2):
        for chunk_s in logits[:, layer].split(4):
            with_logits.update(layer, "attn_logits", chunk_s)
            with_logits.update(layer, "attn", chunk_s.softmax(-1))
            plain.update(layer, "attn", chunk_s.softmax(-1))
    r1, r2 = with_logits.compute(), plain.compute()
    for key in ("distance_per_head", "nmi_per_head", "entropy_per_head"):
        torch.testing.assert_close(torch.tensor(r1[key]), torch.tensor(r2[key]), rtol=1e-5, atol=1e-5, msg=key)
    # and per image: the mean of per-image values
    per_image = patch_attention(logits[:, 0].softmax(-1), 1)
    ent = -(xlogx(per_image.double()).sum(-1)).mean(-1).mean(0)
    torch.testing.assert_close(torch.tensor(r1["entropy_per_head"][0], dtype=torch.float64), ent, rtol=1e-5, atol=1e-6)


def test_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one shape"):
        patch_row_sums(torch.rand(1, 1, 5, 5), torch.rand(1, 1, 4, 4), 1, grid_distances((2, 2), (8, 8)))


def test_without_numba_the_pytorch_statistics_serve(monkeypatch, caplog):
    import builtins

    real_import = builtins.__import__

    def no_kernel(name, *args, **kwargs):
        if name == "vitscope.metrics.attention_cpu":
            raise ImportError("no numba here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_kernel)
    info = ViTInfo(depth=1, num_heads=2, embed_dim=8, num_prefix_tokens=1, grid_size=(3, 3), patch_size=(8, 8))
    with caplog.at_level("WARNING", logger="vitscope.metrics.attention"):
        stats = AttentionStats(info)
    assert stats.taps == ("attn",) and "without the numba kernel" in caplog.text
    stats.update(0, "attn", torch.randn(2, 2, 10, 10).softmax(-1))
    assert stats.compute()["nmi"][0] >= 0
