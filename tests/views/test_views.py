"""The pure functions behind inspect, each against a hand-computed case."""

import math

import numpy as np
import pytest
import torch

from vitscope.errors import VitscopeError
from vitscope.views.pure import (default_queries, gaussian_kde_curve, parse_query, pca_before_after,
                                 quantise_rows, query_maps, to_pixels, tsne_2d)
from vitscope.views.run import explorer_plan, resolve_block


def test_parse_query_inside_and_outside_the_grid():
    assert parse_query("3,7", (8, 8)) == (3, 7)
    assert parse_query(" 0 , 0 ", (2, 3)) == (0, 0)
    with pytest.raises(VitscopeError, match=r"query 8,0 is outside the 8×8 patch grid \(rows 0…7"):
        parse_query("8,0", (8, 8))
    with pytest.raises(VitscopeError, match="outside"):
        parse_query("-1,2", (8, 8))
    with pytest.raises(VitscopeError, match="ROW,COL"):
        parse_query("3", (8, 8))
    assert default_queries((8, 8)) == [(4, 4), (0, 0)] and default_queries((3, 5)) == [(1, 2), (0, 0)]


def test_query_map_drops_the_cls_token_and_renormalises():
    # 1 CLS + 2×2 patches. Query patch (0,1) = token 2 puts 0.5 on CLS, 0.25 on itself, 0.25 on patch (1,1).
    a = torch.zeros(1, 5, 5)
    a[0, 2] = torch.tensor([0.5, 0.0, 0.25, 0.0, 0.25])
    m = query_maps(a, (0, 1), (2, 2), num_prefix_tokens=1)
    torch.testing.assert_close(m[0], torch.tensor([[0.0, 0.5], [0.0, 0.5]]))


def test_pca_keeps_a_pure_translation_a_translation():
    """Fig. 6: if attention moves every token by the same vector, the projected tokens move by one vector."""
    rng = np.random.default_rng(0)
    before = rng.normal(size=(2, 16, 6))
    shift = rng.normal(size=6) * 3
    pb, pa, explained = pca_before_after(before, before + shift)
    moves = (pa - pb).reshape(-1, 2)
    np.testing.assert_allclose(moves, np.broadcast_to(moves[0], moves.shape), atol=1e-9)
    assert pb.shape == (2, 16, 2) and 0 < explained.sum() <= 1 + 1e-12 and explained[0] >= explained[1]
    same_b, same_a, _ = pca_before_after(before, before)
    np.testing.assert_allclose(same_a, same_b)


def test_tsne_caps_perplexity_below_the_token_count():
    pts = np.concatenate([np.zeros((5, 3)), np.full((5, 3), 10.0)]) + np.random.default_rng(0).normal(size=(10, 3)) * 0.1
    emb, perp, kl = tsne_2d(pts, seed=0, perplexity=30)
    assert emb.shape == (10, 2) and perp == 3.0 and math.isfinite(kl)
    # two far-apart groups stay apart: every within-group distance is below every between-group one
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    within = max(d[:5, :5].max(), d[5:, 5:].max())
    assert within < d[:5, 5:].min()
    with pytest.raises(VitscopeError):
        tsne_2d(pts[:3], seed=0)


def test_kde_is_scotts_gaussian_and_undefined_for_one_value():
    xs = np.array([0.0, 0.3, 0.5])
    v = np.array([0.2, 0.4])
    # scipy's Scott factor n^(-1/5) times the sample std (ddof 1) is the bandwidth
    bw = 2 ** (-1 / 5) * np.std(v, ddof=1)
    hand = np.mean([np.exp(-0.5 * ((xs - vi) / bw) ** 2) / (bw * np.sqrt(2 * np.pi)) for vi in v], axis=0)
    np.testing.assert_allclose(gaussian_kde_curve(v, xs), hand, rtol=1e-10)
    assert gaussian_kde_curve([0.5], xs) is None and gaussian_kde_curve([0.3, 0.3, 0.3], xs) is None


def test_quantise_rows_scales_each_row_to_its_maximum():
    q, peak = quantise_rows(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    assert q.dtype == np.uint8 and q.tolist() == [[255, 128, 128], [32, 32, 255]]
    np.testing.assert_allclose(peak, [0.5, 0.8])


def test_to_pixels_undoes_the_normalisation():
    x = torch.tensor([0.0, 1.0, 0.5]).view(1, 3, 1, 1)  # normalised values
    px = to_pixels(x, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))
    assert px.shape == (1, 1, 1, 3) and px[0, 0, 0].tolist() == [128, 191, 191]


def test_explorer_plan_drops_images_then_heads():
    per_image = 12 * 4 * 64 * 64  # 12 blocks, 3 heads + mean, 8×8 grid
    assert explorer_plan(4, 12, 3, 64, budget=4 * per_image) == (4, True)
    assert explorer_plan(4, 12, 3, 64, budget=2 * per_image + 5) == (2, True)
    assert explorer_plan(4, 12, 3, 64, budget=per_image - 1) == (1, False)


def test_resolve_block_is_one_based():
    assert resolve_block(None, 6) == 5 and resolve_block(1, 6) == 0
    with pytest.raises(VitscopeError, match=r"--block 7 is outside 1…6"):
        resolve_block(7, 6)


def test_tsne_runs_on_one_thread(monkeypatch):
    """t-SNE caps OpenMP and BLAS at one thread: more only oversubscribe a shared CPU."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_info

    seen = []
    fit = TSNE.fit_transform

    def spy(self, x, *args, **kwargs):
        seen.extend(pool["num_threads"] for pool in threadpool_info())
        return fit(self, x, *args, **kwargs)

    monkeypatch.setattr(TSNE, "fit_transform", spy)
    tsne_2d(np.random.default_rng(0).standard_normal((40, 8)), seed=0)
    assert seen and set(seen) == {1}


def test_inspect_draws_sams_windowed_attention():
    """A windowed block's maps are joined over the image (zero between windows): inspect draws SAM."""
    from vitscope.api import inspect

    spec = ("random:samvit_base_patch16(img_size=40, patch_size=8, window_size=2, global_attn_indexes=(1,), "
            "neck_chans=8, embed_dim=32, depth=2, num_heads=2)")
    images = np.random.default_rng(0).integers(0, 255, (4, 40, 40, 3), dtype=np.uint8)
    result = inspect(spec, images, explorer_images=2, progress=False)
    assert {"attention_maps_1.png", "norm_maps_1.png", "explorer.html"} <= set(result.files)


def test_inspect_says_it_does_not_draw_caits_class_attention():
    from vitscope.api import inspect

    spec = "random:cait_xxs24_224(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, depth_token_only=2)"
    images = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    result = inspect(spec, images, explorer_images=2, progress=False)
    assert result.results["class_attention"].startswith("the 2 class-attention blocks (CaiT) are not drawn")
    assert "class_attention" not in inspect("random:vit_tiny_patch4_32", images[:, :32, :32], explorer_images=2,
                                            progress=False).results
