"""The encoder every objective trains: a timm ``VisionTransformer``, wrapped, not forked.

:class:`ViTEncoder` exposes the token-level stages the objectives need (patch
embedding, position embedding, prefix tokens, blocks) while the weights stay in the
timm module, so ``encoder.vit.state_dict()`` is a timm state dict that
``vitscope.models.load`` reads back. After lightly's ``MaskedVisionTransformerTIMM``.
"""

from __future__ import annotations

import torch
from torch import nn

from timm.layers import resample_abs_pos_embed

from vitscope.errors import VitscopeError
from vitscope.train.local_attention import grid_coords, local_window_mask


def sincos_2d(grid: tuple[int, int], dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding ``[H·W, dim]`` (MoCo v3 ``vits.py``, MAE).

    With ω_d = temperature^(−d / (dim/4)), d < dim/4, a token at column w and row h gets
    [sin(w ω), cos(w ω), sin(h ω), cos(h ω)].
    """
    if dim % 4:
        raise VitscopeError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    rows, cols = grid_coords(grid)
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    out_w = cols.double()[:, None] * omega[None]
    out_h = rows.double()[:, None] * omega[None]
    return torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1).float()


@torch.no_grad()
def xavier_patch_embed(vit: nn.Module) -> None:
    """MoCo v3's init of the (random, then frozen) patch projection: U(±√(6 / (3·p² + D))), bias 0.

    It treats the convolution as the linear layer it is (``vits.py`` of the official code).
    """
    proj = vit.patch_embed.proj
    fan = proj.weight.shape[1] * proj.weight.shape[2] * proj.weight.shape[3] + proj.weight.shape[0]
    bound = (6.0 / fan) ** 0.5
    proj.weight.uniform_(-bound, bound)
    if proj.bias is not None:
        proj.bias.zero_()


class ViTEncoder(nn.Module):
    """A timm ViT with access to its stages; ``forward(images)`` → all tokens after the final norm.

    Args:
        vit: a timm ``VisionTransformer`` (fixed image size; its head is removed).
        local_attention: odd window K (0 = global attention), see :mod:`local_attention`.
        sincos_pos: replace the position embedding by the fixed 2-D sin-cos one.
        frozen_patch_embed: MoCo v3's stop-grad-conv1: keep the random patch projection.
    """

    def __init__(self, vit: nn.Module, *, local_attention: int = 0, sincos_pos: bool = False,
                 frozen_patch_embed: bool = False) -> None:
        super().__init__()
        for attr in ("patch_embed", "blocks", "norm", "num_prefix_tokens"):
            if not hasattr(vit, attr):
                raise VitscopeError(f"{type(vit).__name__} is not a timm VisionTransformer (no '{attr}')")
        if getattr(vit, "dynamic_img_size", False):
            raise VitscopeError("pretraining needs a fixed image size; create the ViT without dynamic_img_size")
        vit.reset_classifier(0)
        self.vit = vit
        self.num_prefix = int(vit.num_prefix_tokens)
        self.grid = tuple(vit.patch_embed.grid_size)
        ps = vit.patch_embed.patch_size
        self.patch_size = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
        self.img_size = self.grid[0] * self.patch_size
        self.embed_dim = int(vit.embed_dim)
        self.local_attention = local_attention
        vit.patch_embed.strict_img_size = False  # DINO's local crops are smaller than the input size
        if sincos_pos and vit.pos_embed is not None:
            pos = torch.zeros_like(vit.pos_embed)
            pos[0, pos.shape[1] - self.grid[0] * self.grid[1]:] = sincos_2d(self.grid, self.embed_dim)
            vit.pos_embed = nn.Parameter(pos, requires_grad=False)
        if frozen_patch_embed:
            for p in vit.patch_embed.parameters():
                p.requires_grad = False
        if local_attention:
            rows, cols = grid_coords(self.grid)
            self.register_buffer("window_mask", local_window_mask(rows, cols, local_attention, self.num_prefix),
                                 persistent=False)

    # ---- stages -------------------------------------------------------------------------
    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embedding without position: ``[B, 3, H, W]`` → ``[B, L, D]`` (H, W multiples of the patch)."""
        return self.vit.patch_embed(images)

    def patch_pos(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Position embedding of the patch tokens ``[1, L, D]`` (zeros when the ViT has none).

        For a ``grid`` other than the model's (DINO's local crops) the embedding is resampled
        bicubically to it, as DINO's ``interpolate_pos_encoding`` does.
        """
        grid = grid or self.grid
        pos = self.vit.pos_embed
        if pos is None:
            return torch.zeros(1, grid[0] * grid[1], self.embed_dim, device=next(self.vit.parameters()).device)
        pos = pos[:, pos.shape[1] - self.grid[0] * self.grid[1]:]
        if tuple(grid) == self.grid:
            return pos
        return resample_abs_pos_embed(pos, new_size=list(grid), old_size=list(self.grid), num_prefix_tokens=0)

    def prefix_tokens(self, batch: int) -> torch.Tensor:
        """CLS / register tokens with their position embedding: ``[B, P, D]`` (P may be 0)."""
        vit = self.vit
        parts = [t for t in (vit.cls_token, getattr(vit, "reg_token", None)) if t is not None]
        if not parts:
            return self.patch_pos()[:, :0].expand(batch, -1, -1)
        prefix = torch.cat(parts, dim=1)
        pos = vit.pos_embed
        if pos is not None and not vit.no_embed_class:
            prefix = prefix + pos[:, : self.num_prefix]
        return prefix.expand(batch, -1, -1)

    def run_blocks(self, tokens: torch.Tensor, keep_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Blocks and final norm over ``[B, P+L', D]`` tokens; ``keep_ids [B, L']`` says which
        patches are present (MAE), for the local-attention mask."""
        vit = self.vit
        x = vit.norm_pre(vit.pos_drop(tokens))
        mask = None
        if self.local_attention:
            if keep_ids is None:
                mask = self.window_mask
            else:
                rows, cols = keep_ids // self.grid[1], keep_ids % self.grid[1]
                mask = local_window_mask(rows, cols, self.local_attention, self.num_prefix)
        for blk in vit.blocks:
            x = blk(x) if mask is None else blk(x, attn_mask=mask)
        return vit.norm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """All tokens of full images after the final norm: ``[B, P+L, D]``. Images of another
        size than the model's (a multiple of the patch; global attention only) get the
        resampled position embedding."""
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        if grid != self.grid and self.local_attention:
            raise VitscopeError("local attention is defined on the model's own grid; crops of another size cannot use it")
        x = self.embed_patches(images) + self.patch_pos(grid)
        x = torch.cat([self.prefix_tokens(x.shape[0]), x], dim=1)
        return self.run_blocks(x)

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """The image representation timm's head would see (CLS or average pool): ``[B, D]``."""
        return self.vit.forward_head(tokens, pre_logits=True)

    def block_groups(self, parts: int = 3) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters grouped as ``embed`` and ``blocks a-b`` in ``parts`` near-equal
        slices of depth (for the gradient-cosine log of the hybrid)."""
        depth = len(self.vit.blocks)
        bounds = [round(i * depth / parts) for i in range(parts + 1)]
        groups = {"embed": [p for n, p in self.vit.named_parameters()
                            if not n.startswith(("blocks.", "norm.", "fc_norm.")) and p.requires_grad]}
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b > a:
                groups[f"blocks{a}-{b - 1}"] = [p for blk in self.vit.blocks[a:b] for p in blk.parameters()
                                                if p.requires_grad]
        return {k: v for k, v in groups.items() if v}
