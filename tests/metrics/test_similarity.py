import pytest
import torch

from vitscope.metrics.similarity import SimilarityStats, cosine, mean_pairwise_cosine
from vitscope.taps import ViTInfo


def test_identical_vectors_cosine_one():
    x = torch.randn(1, 1, 4).expand(2, 5, 4)
    assert torch.allclose(mean_pairwise_cosine(x, dim=1), torch.ones(2))


def test_orthogonal_vectors_cosine_zero():
    x = torch.eye(4)[None]  # 4 orthogonal vectors
    assert mean_pairwise_cosine(x, dim=1).abs().item() < 1e-7


def test_mean_pairwise_cosine_matches_explicit_pairs():
    torch.manual_seed(0)
    x = torch.randn(3, 6, 8)
    z = torch.nn.functional.normalize(x, dim=-1)
    g = z @ z.transpose(1, 2)
    explicit = (g.sum((1, 2)) - g.diagonal(dim1=1, dim2=2).sum(1)) / (6 * 5)
    assert torch.allclose(mean_pairwise_cosine(x, dim=1), explicit, atol=1e-6)


@pytest.mark.parametrize("n", [3, 8, 9, 20])  # a multiply-and-sum up to 8 vectors, a matrix product past it
def test_mean_pairwise_cosine_both_ways_match_explicit_pairs_along_any_dim(n):
    torch.manual_seed(n)
    x = torch.randn(2, n, 5, 7)  # vectors along dim 1, and [.., 5] more of them per item
    x[0, 1] = 0.0  # zero vectors: cosine 0 with everything, as F.normalize makes them
    z = torch.nn.functional.normalize(x, dim=-1).movedim(1, -2)  # [2, 5, n, 7]
    g = z @ z.transpose(-1, -2)
    explicit = (g.sum((-1, -2)) - g.diagonal(dim1=-2, dim2=-1).sum(-1)) / (n * (n - 1))
    assert torch.allclose(mean_pairwise_cosine(x, dim=1), explicit, atol=1e-6)
    assert torch.allclose(mean_pairwise_cosine(x, dim=-3, norms=x.norm(dim=-1)), explicit, atol=1e-6)
    with pytest.raises(ValueError, match="not the last"):
        mean_pairwise_cosine(x, dim=-1)


def test_cosine_equals_torch_and_is_zero_for_a_zero_vector():
    torch.manual_seed(5)
    a, b = torch.randn(4, 6, 8), torch.randn(4, 6, 8)
    b[1, 2] = 0.0
    expected = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    assert torch.allclose(cosine(a, b), expected, atol=1e-6) and cosine(a, b)[1, 2] == 0
    assert torch.allclose(cosine(a, b, b.norm(dim=-1)), expected, atol=1e-6)


def test_orthogonal_vs_identical_heads():
    info = ViTInfo(depth=1, num_heads=2, embed_dim=4, num_prefix_tokens=1, grid_size=(1, 2), patch_size=(1, 1))
    m = SimilarityStats(info)
    same = torch.ones(2, 3, 2, 2)  # [B, N, H, Dh]: both heads equal
    m.update(0, "head_out", same)
    x = torch.randn(2, 3, 4)
    m.update(0, "block_in", x)
    m.update(0, "attn_res", x)
    r = m.compute()
    assert abs(r["heads_cosine"][0] - 1.0) < 1e-6
    assert abs(r["depth_cosine"][0] - 1.0) < 1e-6  # unchanged by attention
    orth = torch.zeros(2, 3, 2, 2)
    orth[..., 0, 0] = 1
    orth[..., 1, 1] = 1
    m2 = SimilarityStats(info)
    m2.update(0, "head_out", orth)
    m2.update(0, "block_in", x)
    m2.update(0, "attn_res", -x)
    r2 = m2.compute()
    assert abs(r2["heads_cosine"][0]) < 1e-6
    assert abs(r2["depth_cosine"][0] + 1.0) < 1e-6
    assert torch.allclose(cosine(x, x), torch.ones(2, 3))


def test_single_head_model_reports_no_head_similarity():
    info = ViTInfo(depth=1, num_heads=1, embed_dim=4, num_prefix_tokens=0, grid_size=(1, 2), patch_size=(1, 1))
    m = SimilarityStats(info)
    x = torch.randn(2, 2, 4)
    m.update(0, "head_out", x[:, :, None])
    m.update(0, "block_in", x)
    m.update(0, "attn_res", x)
    r = m.compute()
    assert r["heads_cosine"] == [None] and abs(r["depth_cosine"][0] - 1) < 1e-6


def test_compiled_similarity_equals_eager(caplog):
    """``SimilarityStats(compile=True)`` gives the eager results over two batch sizes,
    with a zero vector (whose cosine is 0) among the tokens."""
    info = ViTInfo(depth=1, num_heads=3, embed_dim=12, num_prefix_tokens=1, grid_size=(2, 3), patch_size=(4, 4))
    torch.manual_seed(4)
    heads, before, after = torch.randn(7, 7, 3, 4), torch.randn(7, 7, 12), torch.randn(7, 7, 12)
    after[0, 2] = 0.0
    eager, fast = SimilarityStats(info), SimilarityStats(info, compile=True)
    with caplog.at_level("WARNING", logger="vitscope.runtime"):
        for i in (slice(0, 4), slice(4, 7)):
            for m in (eager, fast):
                m.update(0, "head_out", heads[i])
                m.update(0, "block_in", before[i])
                m.update(0, "attn_res", after[i])
    assert not [r for r in caplog.records if r.name == "vitscope.runtime"], "torch.compile fell back to eager"
    r1, r2 = eager.compute(), fast.compute()
    for key in ("heads_cosine", "depth_cosine", "tokens_cosine"):
        assert abs(r1[key][0] - r2[key][0]) < 1e-5, key
