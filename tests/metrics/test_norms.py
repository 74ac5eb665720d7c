"""Token norms (Darcet et al.): the pure functions against hand-computed cases, and ``analyze``
on a model whose tokens are planted with known norms."""

import math

import pytest
import torch

from vitscope.api import analyze
from vitscope.data.synthetic import write_synthetic_folder
from vitscope.metrics.norms import (
    BINS,
    LOG10_RANGE,
    NormStats,
    histogram_quantile,
    log_norm_histogram,
    neighbour_cosine,
    outlier_mask,
)
from vitscope.models.timm_factory import create_timm
from vitscope.taps import vit_info

BIN = 10 ** ((LOG10_RANGE[1] - LOG10_RANGE[0]) / BINS)  # one bin's factor


def test_histogram_quantile_is_exact_to_a_bin():
    torch.manual_seed(0)
    x = torch.rand(2000) * 10 + 0.1
    h = log_norm_histogram(x)
    assert h.sum() == 2000 and h.shape == (BINS,)
    for q in (0.5, 0.99):
        assert histogram_quantile(h, q) == pytest.approx(torch.quantile(x, q).item(), rel=BIN - 1)
    assert math.isnan(histogram_quantile(torch.zeros(BINS), 0.5))
    ends = log_norm_histogram(torch.tensor([0.0, 1e-9, 1e9]))
    assert ends[0] == 2 and ends[-1] == 1


def test_outliers_are_relative_to_each_images_median():
    norms = torch.tensor([[1.0, 1.0, 1.0, 3.9, 4.1], [10.0, 10.0, 10.0, 41.0, 39.0]])
    assert outlier_mask(norms).tolist() == [[False, False, False, False, True], [False, False, False, True, False]]


def test_neighbour_cosine_by_hand():
    """A 2×3 grid of one-hot tokens where patches 0 and 1 are equal: patch 0 has neighbours 1 (cos 1)
    and 3 (cos 0): 1/2; patch 1 has 0, 2, 4: 1/3; patch 2 has 1 and 5: 0."""
    x = torch.eye(8)[[0, 0, 2, 3, 4, 5]][None]
    got = neighbour_cosine(x, (2, 3))[0]
    assert torch.allclose(got, torch.tensor([0.5, 1 / 3, 0, 0, 0, 0]))


GRID = 4  # 16-px images, 4-px patches
OUTLIER, MILD = 5, 10  # planted patches: norm 20 (outlier), norm 3 (not: 3 ≤ 4 × median 1)


def planted_input(x: torch.Tensor) -> torch.Tensor:
    """Tokens entering block 0: patch p is the one-hot e_p, but the outlier and its 4-neighbours
    (patches 1, 4, 6, 9) are all e_31; CLS is e_30."""
    b, n, d = x.shape
    idx = torch.arange(n - 1)
    idx[[OUTLIER, 1, 4, 6, 9]] = 31
    return torch.eye(d)[torch.cat([torch.tensor([30]), idx])].expand(b, n, d).clone()


def planted_output(x: torch.Tensor) -> torch.Tensor:
    """Tokens leaving a block: CLS of norm 5, every patch of norm 1 but the outlier (20) and MILD (3)."""
    norms = torch.ones(x.shape[1])
    norms[0], norms[1 + OUTLIER], norms[1 + MILD] = 5, 20, 3
    return torch.nn.functional.normalize(x, dim=-1) * norms[None, :, None]


def expected_cosines() -> tuple[float, float]:
    """By hand: the outlier shares e_31 with its 4 neighbours: cosine 1. Each of those 4 neighbours has
    the outlier and the other e_31 patches among its neighbours; the rest see only distinct one-hots."""
    x = planted_input(torch.zeros(1, 17, 32))[:, 1:]
    cos = neighbour_cosine(x, (GRID, GRID))[0]
    others = torch.cat([cos[:OUTLIER], cos[OUTLIER + 1:]])
    return float(cos[OUTLIER]), float(others.mean())


def test_neighbour_cosine_of_the_planted_grid_by_hand():
    out, others = expected_cosines()
    # neighbours of 5 are 1, 4, 6, 9: patch 1 (neighbours 0, 2, 5) 1/3, 4 (0, 5, 8) 1/3,
    # 6 (2, 5, 7, 10) 1/4, 9 (5, 8, 10, 13) 1/4
    assert out == 1.0 and others == pytest.approx((1 / 3 + 1 / 3 + 1 / 4 + 1 / 4) / 15)


def test_norm_stats_streamed_by_update():
    model = create_timm("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4, embed_dim=32, depth=2,
                        num_heads=2)
    m = NormStats(vit_info(model))
    for _ in range(3):  # three batches of 2 images
        x = torch.randn(2, 17, 32)
        m.update(0, "block_in", planted_input(x))
        for layer in range(2):
            m.update(layer, "block_out", planted_output(x))
    check_planted(m.compute())


def check_planted(r: dict) -> None:
    out, others = expected_cosines()
    for layer in range(2):
        assert r["median"][layer] == pytest.approx(1.0, rel=BIN - 1)
        assert r["p99"][layer] == pytest.approx(20.0, rel=BIN - 1)
        assert r["mean"][layer] == pytest.approx((14 + 3 + 20) / 16)
        assert r["outlier_fraction"][layer] == pytest.approx(1 / 16)
        assert r["images_with_outliers"][layer] == 1.0
        assert r["neighbour_cosine_outliers"][layer] == pytest.approx(out)
        assert r["neighbour_cosine_others"][layer] == pytest.approx(others, rel=1e-6)
        assert r["prefix_mean_norm"][layer] == pytest.approx(5.0)


def test_analyze_a_model_with_planted_norms(tmp_path, monkeypatch):
    """Every block's input and output replaced by planted tokens (hooks registered before the taps'):
    ``analyze --metrics norms`` gives the hand-computed numbers, its frame and figure hold them."""
    import importlib

    def planted(spec: str, *, seed: int = 0):
        model = create_timm("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4, embed_dim=32,
                            depth=2, num_heads=2).eval()
        model.blocks[0].register_forward_pre_hook(lambda _m, args: (planted_input(args[0]),))
        for blk in model.blocks:
            blk.register_forward_hook(lambda _m, _a, out: planted_output(out))
        model.vitscope_spec = spec
        return model

    monkeypatch.setattr(importlib.import_module("vitscope.models.loader"), "load", planted)
    images = write_synthetic_folder(tmp_path / "imgs", 5, size=16)
    a = analyze("random:planted", str(images), out=tmp_path / "out", metrics="norms", batch_size=2, workers=0,
                progress=False)
    check_planted(a.metrics["norms"])
    assert (tmp_path / "out" / "norms.png").is_file()
    frame = a.to_frame()
    rows = frame[(frame.metric == "norms") & (frame.quantity == "outlier_fraction")]
    assert rows.block.tolist() == [1, 2] and rows.value.tolist() == pytest.approx([1 / 16] * 2)
    assert set(rows.figure) == {"Darcet Fig. 3"}
    assert a.results["conventions"]["norm_outliers"].startswith("patch token norm > 4 x")
