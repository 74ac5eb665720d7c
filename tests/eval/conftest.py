"""Tiny ViT and tiny labelled image sets for the evaluation tests (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer

TINY = "vit_evaltest_tiny"

default_cfgs = generate_default_cfgs({
    f"{TINY}.untrained": dict(num_classes=10, input_size=(3, 32, 32), crop_pct=1.0, interpolation="bilinear",
                              mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), first_conv="patch_embed.proj",
                              classifier="head"),
})


if TINY not in timm.list_models():
    @register_model
    def vit_evaltest_tiny(pretrained: bool = False, **kwargs):
        """ViT for tests: 32 px, patch 8 (16 patches), width 32, 3 blocks, 2 heads."""
        args = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=10)
        args.update(kwargs)
        return build_model_with_cfg(VisionTransformer, TINY, pretrained, **args)


@pytest.fixture
def tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    return timm.create_model(TINY).eval()


def write_class_folder(root: Path, per_class: int = 8, seed: int = 0) -> Path:
    """Two classes told apart by brightness: ``dark/`` and ``light/``, 32×32 RGB PNGs."""
    rng = np.random.default_rng(seed)
    for c, (name, base) in enumerate((("dark", 50), ("light", 200))):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = np.clip(base + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture
def class_folders(tmp_path: Path) -> tuple[Path, Path]:
    return write_class_folder(tmp_path / "train", 8, 0), write_class_folder(tmp_path / "val", 4, 1)


def _manual_block_outputs(model, images: torch.Tensor) -> list[torch.Tensor]:
    """Run timm's ViT forward by hand, keeping every block's output ``[B, N, D]``."""
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
    outs = []
    for blk in model.blocks:
        x = blk(x)
        outs.append(x)
    return outs


@pytest.fixture
def manual_block_outputs():
    return _manual_block_outputs


@pytest.fixture
def stacked_images():
    """All images of a ``LabelledSet`` as one ``[N, 3, H, W]`` tensor."""
    return lambda data: torch.stack([data.dataset[i][0] for i in range(len(data))])
