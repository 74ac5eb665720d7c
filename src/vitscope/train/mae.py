"""MAE (He et al., CVPR 2022) around a timm ViT.

After the official ``models_mae.py``, stage by stage: :func:`random_masking` keeps a
random 25 % of the patch tokens per image, the encoder sees only those (plus CLS), a
small ViT decoder (timm ``Block`` s) fills the removed positions with a mask token and
predicts each patch's pixels, and the loss is the MSE on removed patches against
per-patch normalised pixels (``norm_pix_loss``).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from vitscope.train.augment import MAE_VIEW, BatchRandom, make_view
from vitscope.train.encoder import ViTEncoder, sincos_2d


def random_masking(x: torch.Tensor, mask_ratio: float, noise: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking by sorting ``noise [N, L]``.

    x: [N, L, D] → x_masked [N, L_keep, D], mask [N, L] (0 is keep, 1 is remove),
    ids_restore [N, L] (un-shuffles a kept-first sequence), ids_keep [N, L_keep].
    """
    n, length, d = x.shape
    keep = int(length * (1 - mask_ratio))
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :keep]
    x_masked = x.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
    mask = torch.ones(n, length, device=x.device)
    mask[:, :keep] = 0
    return x_masked, mask.gather(1, ids_restore), ids_restore, ids_keep


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """[N, 3, H, W] → [N, L, p²·3], patches in raster order, pixels (row, col, channel)."""
    n, c, h, w = images.shape
    x = images.reshape(n, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool) -> torch.Tensor:
    """MSE per patch averaged over removed patches: Σ_l mask_l · mean_j (pred − t)² / Σ mask.

    With ``norm_pix`` the target of each patch is standardised: t = (x − μ) / √(σ² + 1e−6).
    """
    target = target.float()
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    loss = ((pred.float() - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


class MAE(nn.Module):
    """MAE objective: ``forward(view, noise) → {"loss": ...}``."""

    def __init__(self, encoder: ViTEncoder, *, mask_ratio: float = 0.75, decoder_dim: int = 128,
                 decoder_depth: int = 2, decoder_heads: int = 4, norm_pix_loss: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        length = encoder.grid[0] * encoder.grid[1]
        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        pos = torch.zeros(1, encoder.num_prefix + length, decoder_dim)
        pos[0, encoder.num_prefix:] = sincos_2d(encoder.grid, decoder_dim)
        self.decoder_pos = nn.Parameter(pos, requires_grad=False)
        self.decoder_blocks = nn.Sequential(*[Block(decoder_dim, decoder_heads, mlp_ratio=4.0, qkv_bias=True)
                                              for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, encoder.patch_size ** 2 * 3)

    def make_views(self, images: torch.Tensor, rnd: BatchRandom, mean: torch.Tensor, std: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        view = make_view(images, MAE_VIEW, self.encoder.img_size, mean, std, rnd)
        return view, rnd.uniform(self.encoder.grid[0] * self.encoder.grid[1])

    def forward_encoder(self, view: torch.Tensor, noise: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        enc = self.encoder
        x = enc.embed_patches(view) + enc.patch_pos()
        x, mask, ids_restore, ids_keep = random_masking(x, self.mask_ratio, noise)
        x = torch.cat([enc.prefix_tokens(x.shape[0]), x], dim=1)
        return enc.run_blocks(x, keep_ids=ids_keep), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Latent [N, P+L_keep, D] → pixel predictions [N, L, p²·3]."""
        p = self.encoder.num_prefix
        x = self.decoder_embed(latent)
        n, length = ids_restore.shape
        fill = self.mask_token.to(x.dtype).expand(n, length - (x.shape[1] - p), -1)
        patches = torch.cat([x[:, p:], fill], dim=1)
        patches = patches.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :p], patches], dim=1) + self.decoder_pos
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x[:, p:])

    def mim_loss(self, view: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        latent, mask, ids_restore = self.forward_encoder(view, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return masked_mse(pred, patchify(view, self.encoder.patch_size), mask, self.norm_pix_loss)

    def forward(self, view: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": self.mim_loss(view, noise)}
