"""Tiny timm ViTs with random weights, and the files official training code would write for them."""

from __future__ import annotations

import torch
from timm.models.beit import Beit
from timm.models.vision_transformer import VisionTransformer
from torch import nn

IMG = 32
WIDTH = 128  # head dim 64 → 2 heads, the rule used for non-standard widths


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter ~ N(0, 0.2²), so a wrong key, head count or layout changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def tiny_vit(seed: int = 0, **kwargs) -> VisionTransformer:
    args = dict(img_size=IMG, patch_size=8, embed_dim=WIDTH, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=0)
    args.update(kwargs)
    return randomize(VisionTransformer(**args), seed)


def tiny_beit(seed: int = 0, **kwargs) -> Beit:
    args = dict(img_size=IMG, patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, num_classes=0,
                init_values=0.1)
    args.update(kwargs)
    return randomize(Beit(**args), seed)


def images(n: int = 2, seed: int = 1, size: int = IMG) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def assert_same_model(original: nn.Module, loaded: nn.Module, size: int = IMG) -> None:
    """Same features, same pooled/classified output, on the same images."""
    x = images(size=size)
    with torch.no_grad():
        for name in ("forward_features", "forward"):
            a, b = getattr(original.eval(), name)(x), getattr(loaded.eval(), name)(x)
            assert a.shape == b.shape, name
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-6), f"{name}: max diff {(a - b).abs().max()}"


def prefixed(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state_dict.items()}


def moco_projector(in_dim: int, hidden: int = 32, out: int = 16) -> dict[str, torch.Tensor]:
    """State dict of MoCo v3's ``_build_mlp`` (Linear, BN, ReLU, Linear, BN without affine)."""
    mlp = nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
                        nn.Linear(hidden, out, bias=False), nn.BatchNorm1d(out, affine=False))
    return mlp.state_dict()
