"""Per-block feature extraction equals a manual block-by-block forward; the disk cache is reused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitscope.data import model_transform
from vitscope.errors import VitscopeError
from vitscope.eval.features import extract_features, parse_features
from vitscope.eval.labelled import open_labelled


@torch.no_grad()
def test_features_equal_manual_forward(tiny_vit, class_folders, manual_block_outputs, stacked_images):
    data = open_labelled(str(class_folders[0]), model_transform(tiny_vit))
    feats = extract_features(tiny_vit, data, ("cls", "gap", "gap_noprefix"), batch_size=5, device="cpu", workers=0)
    images = stacked_images(data)
    outs = manual_block_outputs(tiny_vit, images)
    assert feats.blocks["cls"].shape == (16, 3, 32) and feats.blocks["cls"].dtype == np.float16
    for layer, tokens in enumerate(outs):
        expected = {"cls": tokens[:, 0], "gap": tokens.mean(1), "gap_noprefix": tokens[:, 1:].mean(1)}
        for kind, value in expected.items():
            np.testing.assert_allclose(feats.blocks[kind][:, layer].astype(np.float32), value.numpy(),
                                       rtol=2e-3, atol=2e-3, err_msg=f"{kind} block {layer}")
    pooled = tiny_vit.forward_head(tiny_vit.norm(outs[-1]), pre_logits=True)
    np.testing.assert_allclose(feats.pooled.astype(np.float32), pooled.numpy(), rtol=2e-3, atol=2e-3)
    np.testing.assert_array_equal(feats.labels, np.repeat([0, 1], 8))


def test_disk_cache_is_memory_mapped_and_reused(tiny_vit, class_folders, tmp_path, monkeypatch):
    data = open_labelled(str(class_folders[1]), model_transform(tiny_vit))
    key = {"model": "tiny", "data": "val"}
    first = extract_features(tiny_vit, data, ("gap",), device="cpu", cache_dir=tmp_path / "c", cache_key=key,
                             workers=0)
    assert (tmp_path / "c" / "gap.npy").is_file() and (tmp_path / "c" / "meta.json").is_file()

    def no_forward(*_a, **_k):
        raise AssertionError("the model ran although its features were cached")

    monkeypatch.setattr(tiny_vit, "forward_features", no_forward)
    again = extract_features(tiny_vit, data, ("gap",), device="cpu", cache_dir=tmp_path / "c", cache_key=key,
                             workers=0)
    assert isinstance(again.blocks["gap"], np.memmap)
    np.testing.assert_array_equal(again.blocks["gap"], first.blocks["gap"])
    np.testing.assert_array_equal(again.labels, first.labels)
    with pytest.raises(AssertionError, match="cached"):  # a different key is not a cache hit
        extract_features(tiny_vit, data, ("gap",), device="cpu", cache_dir=tmp_path / "c",
                         cache_key={**key, "model": "other"}, workers=0)


def test_unreadable_image_is_skipped_with_its_label(tiny_vit, class_folders):
    bad = class_folders[1] / "light" / "zz_broken.png"
    bad.write_bytes(b"not a png")
    data = open_labelled(str(class_folders[1]), model_transform(tiny_vit))
    feats = extract_features(tiny_vit, data, ("cls",), device="cpu", workers=0)
    assert feats.num_images == 8 and len(feats.skipped) == 1 and "zz_broken" in feats.skipped[0]
    np.testing.assert_array_equal(feats.labels, np.repeat([0, 1], 4))


def test_parse_features():
    assert parse_features("gap, cls,gap", 1) == ("gap", "cls")
    with pytest.raises(VitscopeError, match="Valid options"):
        parse_features("cls,mean", 1)
    with pytest.raises(VitscopeError, match="CLS token"):
        parse_features("cls", 0)
