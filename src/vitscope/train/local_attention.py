"""Attention masks that restrict self-attention to a local window (Park et al., App. D, Fig. D.1).

``--local-attention K`` lets every patch query attend only to the patch keys within a K×K
window around it (Chebyshev grid distance ≤ K // 2). Prefix tokens (CLS, registers) keep
global attention as queries, but patch queries do not attend to them: otherwise the
CLS token would relay global information to every patch after two blocks and the
receptive field would no longer be local. The mask is passed to each timm ``Block`` as
``attn_mask`` (timm ≥ 1.0 threads it to ``F.scaled_dot_product_attention``; boolean,
``True`` = may attend), so the fused attention kernels stay in use.
"""

from __future__ import annotations

import torch


def grid_coords(grid: tuple[int, int], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of each patch token in raster order: two ``[L]`` long tensors."""
    rows = torch.arange(grid[0], device=device).repeat_interleave(grid[1])
    cols = torch.arange(grid[1], device=device).repeat(grid[0])
    return rows, cols


def local_window_mask(rows: torch.Tensor, cols: torch.Tensor, window: int, num_prefix: int) -> torch.Tensor:
    """Boolean attention mask ``[..., P+L, P+L]`` for tokens with grid positions ``rows, cols`` ``[..., L]``.

    mask[q, k] = True iff q is a prefix token, or q and k are patches with
    max(|r_q − r_k|, |c_q − c_k|) ≤ window // 2. Batched positions (``[B, L]``, e.g. the
    visible tokens of MAE) give one mask per image, shaped ``[B, 1, N, N]`` for the heads.
    """
    half = window // 2
    near = ((rows[..., :, None] - rows[..., None, :]).abs() <= half) & \
           ((cols[..., :, None] - cols[..., None, :]).abs() <= half)
    n = num_prefix + rows.shape[-1]
    mask = torch.zeros(*rows.shape[:-1], n, n, dtype=torch.bool, device=rows.device)
    mask[..., :num_prefix, :] = True
    mask[..., num_prefix:, num_prefix:] = near
    return mask if rows.dim() == 1 else mask.unsqueeze(-3)
