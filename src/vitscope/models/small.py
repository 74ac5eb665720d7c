"""ViTs for small images (CIFAR-size, 32 px), registered with timm.

After ``import vitscope`` they work everywhere a timm name does:
``timm.create_model("vit_tiny_patch4_32")``, ``--model random:vit_small_patch4_32``.
Patch 4 on 32 px gives an 8×8 grid, the setting the pretraining issue scales down to.
"""

from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

_CONFIGS: dict[str, dict[str, Any]] = {
    "vit_tiny_patch4_32": dict(embed_dim=192, depth=12, num_heads=3),
    "vit_small_patch4_32": dict(embed_dim=384, depth=12, num_heads=6),
    "vit_base_patch4_32": dict(embed_dim=768, depth=12, num_heads=12),
}


default_cfgs = generate_default_cfgs({
    f"{name}.untrained": dict(
        num_classes=10, input_size=(3, 32, 32), crop_pct=1.0, crop_mode="center",
        interpolation="bicubic", mean=CIFAR_MEAN, std=CIFAR_STD,
        first_conv="patch_embed.proj", classifier="head",
    )
    for name in _CONFIGS
})


def _build(name: str, pretrained: bool, **kwargs: Any) -> VisionTransformer:
    args = dict(img_size=32, patch_size=4, num_classes=10, **_CONFIGS[name])
    args.update(kwargs)
    return build_model_with_cfg(VisionTransformer, name, pretrained, **args)


@register_model
def vit_tiny_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Ti/4 for 32×32 images: width 192, 12 blocks, 3 heads."""
    return _build("vit_tiny_patch4_32", pretrained, **kwargs)


@register_model
def vit_small_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-S/4 for 32×32 images: width 384, 12 blocks, 6 heads."""
    return _build("vit_small_patch4_32", pretrained, **kwargs)


@register_model
def vit_base_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-B/4 for 32×32 images: width 768, 12 blocks, 12 heads."""
    return _build("vit_base_patch4_32", pretrained, **kwargs)
