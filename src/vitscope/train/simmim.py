"""SimMIM (Xie et al., CVPR 2022) around a timm ViT.

After the official ``simmim.py``: a random ``mask_ratio`` (0.6) of *mask patches* is
masked, a mask patch being larger than the ViT patch (default 2×: 8 px on 32-px images
with 4-px patches, 32 px for ViT-B/16), so whole regions disappear rather than single
tokens; masked patch embeddings are replaced by a learnable mask token before the
position embedding; a linear decoder (1×1 conv to patch²·3 channels, then pixel
shuffle) predicts the pixels; the loss is the L1 error on masked pixels only, against
the normalised input view.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vitscope.errors import VitscopeError
from vitscope.train.augment import SIMMIM_VIEW, BatchRandom, make_view
from vitscope.train.encoder import ViTEncoder


def block_mask(scores: torch.Tensor, mask_ratio: float, scale: int) -> torch.Tensor:
    """Mask [B, L] (1 = masked) at mask-patch granularity.

    ``scores [B, g, g]`` are random numbers over the coarse grid of mask patches; the
    ⌈ratio · g²⌉ lowest per image are masked, and each coarse cell is expanded to
    ``scale × scale`` ViT patches (``scale`` = mask patch / ViT patch).
    """
    b, g, _ = scores.shape
    count = math.ceil(g * g * mask_ratio)
    ranks = scores.flatten(1).argsort(1).argsort(1)
    coarse = (ranks < count).float().view(b, g, g)
    return coarse.repeat_interleave(scale, 1).repeat_interleave(scale, 2).flatten(1)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Mean absolute error over masked pixels and channels.

    L = Σ |pred − target| · M / (Σ M · C), with the token mask ``[B, L]`` upsampled to
    pixels ``M [B, 1, H, W]``.
    """
    b, c, h, w = target.shape
    m = mask.view(b, 1, h // patch_size, w // patch_size)
    m = m.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)
    err = (pred.float() - target.float()).abs() * m
    return err.sum() / (m.sum() * c + 1e-5)


class SimMIM(nn.Module):
    """SimMIM objective: ``forward(view, mask) → {"loss": ...}``."""

    def __init__(self, encoder: ViTEncoder, *, mask_ratio: float = 0.6, mask_patch_size: int | None = None) -> None:
        super().__init__()
        p = encoder.patch_size
        mask_patch_size = mask_patch_size or 2 * p
        if mask_patch_size % p or encoder.img_size % mask_patch_size:
            raise VitscopeError(f"SimMIM mask patch {mask_patch_size} px must be a multiple of the ViT patch ({p} px) "
                                f"and divide the image ({encoder.img_size} px)")
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.scale = mask_patch_size // p
        self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.decoder = nn.Sequential(nn.Conv2d(encoder.embed_dim, p * p * 3, kernel_size=1), nn.PixelShuffle(p))

    def make_views(self, images: torch.Tensor, rnd: BatchRandom, mean: torch.Tensor, std: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        view = make_view(images, SIMMIM_VIEW, self.encoder.img_size, mean, std, rnd)
        g = self.encoder.grid[0] // self.scale
        return view, block_mask(rnd.uniform(g, g), self.mask_ratio, self.scale).to(view.device)

    def reconstruct(self, view: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pixels ``[B, 3, H, W]`` predicted from the view with masked patches replaced by the mask token."""
        enc = self.encoder
        x = enc.embed_patches(view)
        w = mask.unsqueeze(-1).to(x.dtype)
        x = x * (1 - w) + self.mask_token.to(x.dtype) * w + enc.patch_pos()
        x = torch.cat([enc.prefix_tokens(x.shape[0]), x], dim=1)
        z = enc.run_blocks(x)[:, enc.num_prefix:]
        b, l, d = z.shape
        z = z.transpose(1, 2).reshape(b, d, *enc.grid)
        return self.decoder(z)

    def mim_loss(self, view: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_l1(self.reconstruct(view, mask), view, mask, self.encoder.patch_size)

    def forward(self, view: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": self.mim_loss(view, mask)}
