"""The CL + MIM hybrid of Park et al. (ICLR 2023, Sec. 5): ``L = (1 − λ)·L_MIM + λ·L_CL``.

One encoder is shared by a MoCo v3 objective (with its heads and momentum copy) and a
MIM objective (SimMIM by default, as in Park et al.'s Fig. 12; MAE on request).

Views. Each loss gets the inputs its own method would get: the two MoCo views (BYOL
augmentations) feed L_CL unmasked, and a third, SimMIM-augmented (or MAE-augmented) view
with its mask feeds L_MIM. Park et al. do not spell this out; we choose it because then
λ = 1 is exactly MoCo v3 and λ = 0 exactly SimMIM (the endpoints their Fig. 12 plots as
"MoCo" and "SimMIM"), so λ changes only the weighting of the objectives, not what the
encoder sees. The price is a third encoder pass per step (masking the MoCo views instead
would save it but would change the contrastive task at every λ).

Gradient conflict. Every ``grad_cos_every`` steps the engine calls
:func:`gradient_cosines`: the cosine between ∇L_MIM and ∇L_CL on the encoder, per group
of blocks (embedding, then thirds of the depth). Layer-Grafted Pre-training (Jiang et
al., ICLR 2023) reports that the two conflict (negative cosine) in deeper layers; the
log shows where λ trades one objective for the other.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from vitscope.train.augment import BatchRandom
from vitscope.train.distributed import world_size
from vitscope.train.mae import MAE
from vitscope.train.moco import MoCoV3
from vitscope.train.simmim import SimMIM


def combine(loss_mim: torch.Tensor, loss_cl: torch.Tensor, lam: float) -> torch.Tensor:
    """L = (1 − λ)·L_MIM + λ·L_CL."""
    return (1 - lam) * loss_mim + lam * loss_cl


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """⟨a, b⟩ / (‖a‖ ‖b‖), 0 when either is zero."""
    denom = a.norm() * b.norm()
    return torch.where(denom > 0, (a * b).sum() / denom.clamp_min(1e-30), torch.zeros_like(denom))


def gradient_cosines(loss_a: torch.Tensor, loss_b: torch.Tensor, groups: dict[str, list[nn.Parameter]]
                     ) -> dict[str, torch.Tensor]:
    """Cosine between ∇loss_a and ∇loss_b per parameter group (and ``all``), graph kept for backward.

    Gradients are summed over processes first, so the cosine is that of the global-batch
    gradients DDP would apply.
    """
    params = [p for ps in groups.values() for p in ps]
    ga = torch.autograd.grad(loss_a, params, retain_graph=True, allow_unused=True)
    gb = torch.autograd.grad(loss_b, params, retain_graph=True, allow_unused=True)
    flat = [torch.cat([(g if g is not None else torch.zeros_like(p)).float().flatten() for g, p in zip(gs, params)])
            for gs in (ga, gb)]
    if world_size() > 1:
        for f in flat:
            dist.all_reduce(f)
    out, start = {}, 0
    for name, ps in groups.items():
        n = sum(p.numel() for p in ps)
        out[name] = cosine(flat[0][start:start + n], flat[1][start:start + n])
        start += n
    out["all"] = cosine(flat[0], flat[1])
    return out


class Hybrid(nn.Module):
    """``forward(v1, v2, mim_view, mim_aux) → {"loss", "loss_cl", "loss_mim"}`` with a shared encoder."""

    def __init__(self, cl: MoCoV3, mim: SimMIM | MAE, lam: float) -> None:
        super().__init__()
        if cl.encoder is not mim.encoder:
            raise ValueError("the CL and MIM objectives must share one encoder")
        self.encoder = cl.encoder
        self.cl, self.mim, self.lam = cl, mim, lam

    def make_views(self, images: torch.Tensor, rnd: BatchRandom, mean: torch.Tensor, std: torch.Tensor
                   ) -> tuple[torch.Tensor, ...]:
        return (*self.cl.make_views(images, rnd, mean, std), *self.mim.make_views(images, rnd, mean, std))

    def update_momentum(self, m: float) -> None:
        self.cl.update_momentum(m)

    def forward(self, v1: torch.Tensor, v2: torch.Tensor, mim_view: torch.Tensor, mim_aux: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        loss_cl = self.cl.contrastive_loss(v1, v2)
        loss_mim = self.mim.mim_loss(mim_view, mim_aux)
        return {"loss": combine(loss_mim, loss_cl, self.lam), "loss_cl": loss_cl, "loss_mim": loss_mim}
