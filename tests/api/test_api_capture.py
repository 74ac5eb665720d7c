"""``vitscope.capture``: the tensors the metrics read, for one batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CL
from PIL import Image

import vitscope
from vitscope.data import model_transform
from vitscope.errors import VitscopeError


def test_captured_tensors_are_what_the_metrics_see(demo):
    from vitscope.metrics.attention import (
        attention_distance,
        attention_nmi,
        grid_distances,
        patch_attention,
    )

    x = demo[0][:4]
    cache = vitscope.capture(CL, x)
    model = vitscope.load(CL)
    depth, heads, tokens, width = 6, 3, 1 + 8 * 8, 96
    assert set(cache) == {"attn", "block_in", "attn_res", "block_out"} and all(len(v) == depth for v in cache.values())
    for attn in cache["attn"]:
        assert attn.shape == (4, heads, tokens, tokens) and attn.dtype == torch.float32
        torch.testing.assert_close(attn.sum(-1), torch.ones(4, heads, tokens))
    assert all(t.shape == (4, tokens, width) for tap in ("block_in", "attn_res", "block_out") for t in cache[tap])
    # the residual stream: each block starts where the last one ended, and ends in the model's features
    for b in range(1, depth):
        torch.testing.assert_close(cache["block_in"][b], cache["block_out"][b - 1])
    transform = model_transform(model)
    batch = torch.stack([transform(Image.fromarray(img)) for img in x])
    with torch.no_grad():
        torch.testing.assert_close(model.norm(cache["block_out"][-1]), model.forward_features(batch))
    # per-head NMI and distance of the captured maps, averaged over the images, are analyze's
    analysis = vitscope.analyze(CL, x, metrics="attention", batch_size=4, workers=0, progress=False)
    att = analysis.metrics["attention"]
    maps = torch.stack([patch_attention(a, 1) for a in cache["attn"]], 1)  # [B, L, H, P, P]
    dist = grid_distances((8, 8), (4, 4)).float()
    nmi = torch.stack([attention_nmi(m) for m in maps]).mean(0)
    distance = torch.stack([attention_distance(m, dist) for m in maps]).mean(0)
    np.testing.assert_allclose(nmi.numpy(), att["nmi_per_head"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(distance.numpy(), att["distance_per_head"], rtol=1e-4)


def test_capture_takes_image_files_and_any_tap(demo_folder):
    cache = vitscope.capture(CL, [demo_folder / "00.png", demo_folder / "01.png"], taps=["qkv", "fc1", "head_out"])
    assert cache["qkv"][0].shape == (2, 65, 3 * 96) and cache["fc1"][0].shape == (2, 65, 4 * 96)
    assert cache["head_out"][0].shape == (2, 65, 3, 32)
    assert vitscope.capture(CL, demo_folder, taps=["block_out"], n=3)["block_out"][0].shape == (3, 65, 96)
    with pytest.raises(VitscopeError, match="unknown taps \\['attention'\\]. Valid options are"):
        vitscope.capture(CL, demo_folder, taps=["attention"])
