"""Tiny ViTs registered with timm and a tiny class-folder image set, made here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer

import vitscope.models  # noqa: F401  (registers vitscope's small ViTs)

CLASSES = ("ant", "bee", "cat")


default_cfgs = generate_default_cfgs({
    # two different preprocessings (mean/std), so each model needs its own view of an image
    "vit_compare_test_p8.untrained": dict(num_classes=len(CLASSES), input_size=(3, 32, 32), crop_pct=1.0,
                                          mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    "vit_compare_test_p16.untrained": dict(num_classes=len(CLASSES), input_size=(3, 32, 32), crop_pct=1.0),
})


def _tiny(name: str, patch: int, **kwargs) -> VisionTransformer:
    args = dict(img_size=32, patch_size=patch, embed_dim=32, depth=3, num_heads=2, mlp_ratio=2.0,
                num_classes=len(CLASSES))
    args.update(kwargs)
    return build_model_with_cfg(VisionTransformer, name, False, **args)


@register_model
def vit_compare_test_p8(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Depth 3, width 32, patch 8 on 32 px, 3 classes."""
    return _tiny("vit_compare_test_p8", 8, **kwargs)


@register_model
def vit_compare_test_p16(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Depth 2, width 48, patch 16 on 32 px (4 patches), 3 classes: a different shape."""
    return _tiny("vit_compare_test_p16", 16, **{"depth": 2, "embed_dim": 48, **kwargs})


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 coloured-noise PNGs in three class folders (plus one unreadable file)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(8):
            arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            arr[..., c] = 255 - arr[..., c] // 4
            Image.fromarray(arr).save(root / name / f"{i}.png")
    (root / "cat" / "broken.png").write_bytes(b"not an image")
    return root
