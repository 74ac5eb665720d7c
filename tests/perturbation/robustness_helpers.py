"""Helpers for the robustness tests: a tiny ViT registered with timm, image writers, shared data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer

import vitscope.models  # noqa: F401  (registers vitscope's small ViTs)
from vitscope.models.small import CIFAR_MEAN, CIFAR_STD

TINY = "vit_robustness_test_tiny"
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

TINY_1K = "vit_robustness_test_tiny1k"

default_cfgs = generate_default_cfgs({
    f"{name}.untrained": dict(num_classes=n, input_size=(3, 32, 32), crop_pct=1.0, crop_mode="center",
                              interpolation="bilinear", mean=CIFAR_MEAN, std=CIFAR_STD,
                              first_conv="patch_embed.proj", classifier="head")
    for name, n in ((TINY, 10), (TINY_1K, 1000))
})


def _tiny(name: str, num_classes: int, pretrained: bool, **kwargs) -> VisionTransformer:
    args = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=num_classes, **kwargs)
    return build_model_with_cfg(VisionTransformer, name, pretrained, **args)


@register_model
def vit_robustness_test_tiny(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Depth 2, width 32, patch 8 on 32 px, 10-class head: fast enough for CPU tests."""
    return _tiny(TINY, 10, pretrained, **kwargs)


@register_model
def vit_robustness_test_tiny1k(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """The same tiny ViT with a 1000-class (ImageNet-sized) head."""
    return _tiny(TINY_1K, 1000, pretrained, **kwargs)


def shared_data() -> Path | None:
    """``$VITSCOPE_SHARED_DATA`` or the repo's sibling ``../shared/data``, if present."""
    env = os.environ.get("VITSCOPE_SHARED_DATA")
    for p in ([Path(env)] if env else []) + [Path(__file__).parents[2] / ".." / "shared" / "data"]:
        if p.is_dir():
            return p
    return None


def write_png(path: Path, rng: np.random.Generator, size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


# shape, texture per stimulus: 2 same-class, 1 with a category outside the test map (knife)
STIMULI = [("airplane", 1, "car", 1), ("airplane", 2, "bird", 1), ("airplane", 1, "airplane", 2),
           ("car", 1, "cat", 2), ("car", 2, "airplane", 1), ("bird", 1, "cat", 1), ("bird", 2, "bird", 1),
           ("cat", 1, "airplane", 2), ("cat", 2, "car", 1), ("cat", 1, "knife", 1), ("knife", 1, "cat", 1)]
