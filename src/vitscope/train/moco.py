"""MoCo v3 (Chen, Xie & He, ICCV 2021) around a timm ViT.

After the official ``moco/builder.py``: the encoder's pooled (CLS) feature goes through a
3-layer projector and a 2-layer predictor (Linear without bias → BN → ReLU, last BN
without affine parameters in the projector, none after the predictor); a momentum copy of
encoder + projector gives the keys, updated as k ← m·k + (1−m)·q with m following a
half-cosine from ``moco_m`` (0.99) to 1 (:func:`vitscope.train.config.momentum_at`).
The loss is the symmetric InfoNCE ``ctr(q1, k2) + ctr(q2, k1)`` with temperature τ = 0.2,
scaled by 2τ, where the keys of all processes are gathered and the labels offset by the
rank. BatchNorm in the heads uses the statistics of the global batch
(:class:`~vitscope.train.distributed.SyncBatchNorm1d`), as the official code converts its
model to ``SyncBatchNorm``. Views: :func:`vitscope.train.augment.moco_views`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from vitscope.train.augment import BatchRandom, make_view, moco_views
from vitscope.train.distributed import SyncBatchNorm1d, gather_cat, get_rank
from vitscope.train.encoder import ViTEncoder


def mlp(num_layers: int, in_dim: int, hidden_dim: int, out_dim: int, last_bn: bool = True) -> nn.Sequential:
    """MoCo v3's MLP: ``num_layers`` × Linear(bias=False), BN + ReLU between, BN(affine=False) last if ``last_bn``."""
    layers: list[nn.Module] = []
    for i in range(num_layers):
        d_in = in_dim if i == 0 else hidden_dim
        d_out = out_dim if i == num_layers - 1 else hidden_dim
        layers.append(nn.Linear(d_in, d_out, bias=False))
        if i < num_layers - 1:
            layers += [SyncBatchNorm1d(d_out), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(SyncBatchNorm1d(d_out, affine=False))
    return nn.Sequential(*layers)


def info_nce(q: torch.Tensor, k: torch.Tensor, temperature: float, offset: int = 0) -> torch.Tensor:
    """InfoNCE of queries ``q [n, d]`` against keys ``k [M, d]`` (all processes' keys), scaled by 2τ.

    L = 2τ · mean_i −log softmax_j(q̂_i · k̂_j / τ)[i + offset], with q̂, k̂ unit vectors and
    ``offset`` = rank · n: query i's positive is its own image's key in the gathered batch.
    """
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    logits = q @ k.t() / temperature
    labels = torch.arange(len(q), device=q.device) + offset
    return F.cross_entropy(logits, labels) * (2 * temperature)


class MoCoV3(nn.Module):
    """MoCo v3 objective: ``forward(view1, view2) → {"loss": ...}``; call :meth:`update_momentum` first."""

    def __init__(self, encoder: ViTEncoder, *, dim: int = 256, mlp_dim: int = 4096, temperature: float = 0.2,
                 crop_min: float = 0.08) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = mlp(3, encoder.embed_dim, mlp_dim, dim)
        self.predictor = mlp(2, dim, mlp_dim, dim, last_bn=False)
        self.momentum_encoder = copy.deepcopy(encoder)
        self.momentum_projector = copy.deepcopy(self.projector)
        for p in (*self.momentum_encoder.parameters(), *self.momentum_projector.parameters()):
            p.requires_grad = False
        self.temperature = temperature
        self.view_specs = moco_views(crop_min)

    def make_views(self, images: torch.Tensor, rnd: BatchRandom, mean: torch.Tensor, std: torch.Tensor
                   ) -> tuple[torch.Tensor, ...]:
        size = self.encoder.img_size
        return tuple(make_view(images, spec, size, mean, std, rnd) for spec in self.view_specs)

    @torch.no_grad()
    def update_momentum(self, m: float) -> None:
        """k ← m·k + (1 − m)·q for encoder and projector (parameters; BN buffers are not averaged)."""
        online = [p for mod in (self.encoder, self.projector) for p in mod.parameters()]
        target = [p for mod in (self.momentum_encoder, self.momentum_projector) for p in mod.parameters()]
        torch._foreach_lerp_(target, online, 1.0 - m)

    def queries(self, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictor outputs of both views. The encoder (LayerNorm only) runs once on both views
        concatenated; the heads run per view so BatchNorm sees each view's batch, as officially."""
        f1, f2 = self.encoder.pooled(self.encoder(torch.cat([v1, v2]))).chunk(2)
        return self.predictor(self.projector(f1)), self.predictor(self.projector(f2))

    @torch.no_grad()
    def keys(self, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.momentum_encoder
        f1, f2 = enc.pooled(enc(torch.cat([v1, v2]))).chunk(2)
        return self.momentum_projector(f1), self.momentum_projector(f2)

    def contrastive_loss(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        """Symmetric MoCo v3 loss ``ctr(q1, k2) + ctr(q2, k1)`` with keys gathered over processes."""
        q1, q2 = self.queries(v1, v2)
        k1, k2 = (gather_cat(k) for k in self.keys(v1, v2))
        offset = get_rank() * len(q1)
        return info_nce(q1, k2, self.temperature, offset) + info_nce(q2, k1, self.temperature, offset)

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": self.contrastive_loss(v1, v2)}
