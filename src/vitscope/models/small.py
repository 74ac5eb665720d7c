"""ViTs for small images (CIFAR-size, 32 px), registered with timm.

After ``import vitscope`` they work everywhere a timm name does:
``timm.create_model("vit_tiny_patch4_32")``, ``--model random:vit_small_patch4_32``.
Patch 4 on 32 px gives an 8×8 grid, the setting the pretraining issue scales down to.
"""

from __future__ import annotations

from typing import Any

from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

_CONFIGS: dict[str, dict[str, Any]] = {
    "vit_tiny_patch4_32": dict(embed_dim=192, depth=12, num_heads=3),
    "vit_small_patch4_32": dict(embed_dim=384, depth=12, num_heads=6),
    "vit_base_patch4_32": dict(embed_dim=768, depth=12, num_heads=12),
}


def _pretrained_cfg(name: str, img_size: int) -> dict[str, Any]:
    return dict(
        architecture=name, tag="", hf_hub_id=None, url="", num_classes=10,
        input_size=(3, img_size, img_size), crop_pct=1.0, crop_mode="center",
        interpolation="bicubic", mean=CIFAR_MEAN, std=CIFAR_STD,
        first_conv="patch_embed.proj", classifier="head",
    )


def _build(name: str, pretrained: bool, **kwargs: Any) -> VisionTransformer:
    if pretrained:
        raise ValueError(f"{name} has no pretrained weights; load a vitscope checkpoint instead")
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    args = dict(img_size=32, patch_size=4, num_classes=10, **_CONFIGS[name])
    args.update(kwargs)
    model = VisionTransformer(**args)
    cfg = _pretrained_cfg(name, int(args["img_size"]))
    model.pretrained_cfg = cfg
    model.default_cfg = cfg
    return model


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
