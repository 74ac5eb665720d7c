"""DINO (Caron et al., *Emerging Properties in Self-Supervised Vision Transformers*, ICCV 2021).

After the official ``main_dino.py`` / ``vision_transformer.py``: a student (the encoder and
a projection head) is trained to match a teacher, an exponential moving average of the
student, through a cross-entropy between their distributions over K prototypes:

- **Head** (:class:`DINOHead`): a 3-layer MLP (Linear → GELU, twice, then Linear to a
  256-d bottleneck; truncated-normal init σ = 0.02), ℓ2 normalisation, then a weight-
  normalised Linear to K prototypes without bias whose norm is fixed to 1 (the official
  ``weight_norm`` with ``weight_g`` ≡ 1, ``norm_last_layer=True``): logit k is the cosine
  between the bottleneck vector and prototype k. With ``norm_last_layer=False`` (the official
  ViT-S/16 setting) each prototype also has a learnable norm g_k (``weight_g``, initialised to
  1, weight-decayed like the official ``[K, 1]`` matrix): logit k = g_k · cos(z, w_k).
- **Teacher**: the encoder and head copied at the start, then θ_t ← m·θ_t + (1 − m)·θ_s
  with m on a half cosine from ``dino_m`` (0.996) to 1; it sees the two global crops only
  and runs without drop-path.
- **Centring and sharpening**: teacher probabilities P_t = softmax((g_t − c) / τ_t) with a
  centre c ← 0.9·c + 0.1·mean(g_t) over the global batch (all processes) and τ_t = 0.04
  (``main_dino.py``'s default), or warmed up linearly to a higher value such as the ViT-S/16
  recipe's 0.07 (:func:`teacher_temp_at`); student P_s = softmax(g_s / 0.1). On the zoo's
  CIFAR-10 ViT a warm-up to 0.07 in 1.6 epochs collapsed to the uniform distribution
  (docs/pretrain.md), as the official help warns ("anything above 0.07 is unstable").
- **Sinkhorn–Knopp centring** (``centering="sinkhorn"``, beyond the DINO paper: SwAV, Caron et al.
  2020, Alg. 1; DINOv2's ``sinkhorn_knopp_teacher``): instead of the EMA centre, the teacher's
  assignments over the global batch are made equipartitioned by :func:`sinkhorn_knopp`, so that no
  prototype dominates and no image's distribution is flattened to the batch mean.
- **KoLeo** (``koleo_weight`` > 0, beyond the DINO paper: DINOv2 Sec. 4, weight 0.1): a term
  −(1/B) Σ_b log min_{b'≠b} ‖x_b − x_b'‖ on the ℓ2-normalised encoder outputs of each global crop
  (:func:`koleo_loss`), which spreads the images of a batch over the sphere.
- **Collapse monitors**: the forward pass also returns the teacher entropy and the KL
  divergence between teacher and student (:func:`mean_entropy`), logged every ``log_every`` steps.
- **Loss** (:func:`dino_loss`): the mean over pairs (global crop i of the teacher, crop v of
  the student, v ≠ i) of H(P_t^i, P_s^v) = −Σ_k P_t^i(k) log P_s^v(k), averaged over images.
- **Multi-crop**: two global crops at the model's input size plus ``local_crops`` small
  crops (:func:`~vitscope.train.augment.dino_views`), which the student encodes with its
  position embedding resampled bicubically to their grid, as the official
  ``interpolate_pos_encoding`` does.
- **Last layer frozen** (the gradients of its prototypes and norms dropped) during the first
  ``freeze_last_layer`` epochs (:meth:`DINO.cancel_gradients`), as officially, which stabilises
  the start of training.

K for 32-px images: the official K = 65,536 serves 1.28 M ImageNet images, about 20 images per
prototype. CIFAR-10 has 50,000 images and 10 classes; we take K = 4,096 (``dino_out_dim``), about
12 images per prototype, the value CIFAR recipes such as solo-learn's use: far more prototypes
than classes, at a 16th of the head's last-layer cost.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vitscope.train.augment import BatchRandom, ViewSpec, dino_views, make_view
from vitscope.train.config import DINO_CENTERINGS  # ema | sinkhorn
from vitscope.train.distributed import mean_over_processes, sum_over_processes, world_size
from vitscope.train.encoder import ViTEncoder


class DINOHead(nn.Module):
    """DINO's projection head: MLP → ℓ2 normalisation → cosine against K unit prototypes.

    ``forward(x [B, in_dim]) → [B, out_dim]`` logits g_k · cos(z, w_k): each in [−1, 1] with
    ``norm_last_layer`` (g ≡ 1), else scaled by the learnable norms ``gains`` ([K, 1]).
    """

    def __init__(self, in_dim: int, out_dim: int = 4096, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 norm_last_layer: bool = True) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # the official last layer is nn.Linear(bottleneck, K)'s default init, then weight-normalised
        self.prototypes = nn.Parameter(nn.Linear(bottleneck_dim, out_dim, bias=False).weight.detach().clone())
        self.gains = None if norm_last_layer else nn.Parameter(torch.ones(out_dim, 1))

    def last_layer(self) -> list[nn.Parameter]:
        """The parameters of the weight-normalised last layer (frozen at the start of training)."""
        return [self.prototypes] if self.gains is None else [self.prototypes, self.gains]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(x), dim=-1)
        w = F.normalize(self.prototypes, dim=1)
        return F.linear(z, w if self.gains is None else self.gains * w)


def teacher_probs(teacher_logits: torch.Tensor, center: torch.Tensor, temperature: float) -> torch.Tensor:
    """Centred, sharpened teacher distribution: P_t = softmax((g_t − c) / τ_t) along the last axis."""
    return F.softmax((teacher_logits.float() - center) / temperature, dim=-1)


def dino_loss(student_logits: list[torch.Tensor], teacher: list[torch.Tensor], student_temp: float) -> torch.Tensor:
    """DINO's loss over crops: mean over pairs (i, v), v ≠ i, of mean_b H(P_t^i, P_s^v).

    ``student_logits``: one ``[B, K]`` tensor per crop, the global crops first;
    ``teacher``: the teacher probabilities of the global crops (:func:`teacher_probs`), in the
    same order. H(p, q) = −Σ_k p(k) log q(k) with q = softmax(g_s / ``student_temp``).
    """
    total, terms = student_logits[0].new_zeros((), dtype=torch.float32), 0
    for i, p in enumerate(teacher):
        for v, s in enumerate(student_logits):
            if v == i:
                continue
            total = total + (-p * F.log_softmax(s.float() / student_temp, dim=-1)).sum(-1).mean()
            terms += 1
    return total / terms


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: torch.Tensor, temperature: float, iterations: int = 3) -> torch.Tensor:
    """Teacher assignments by Sinkhorn–Knopp (SwAV Alg. 1, DINOv2's ``sinkhorn_knopp_teacher``): ``[B, K]``.

    Q = exp(g_t / τ_t)ᵀ (K × B, B the global batch over all processes), scaled to sum 1, then
    ``iterations`` times: every prototype's row scaled to total 1/K, every sample's column to 1/B;
    returned as B·Qᵀ, so each sample's row is a distribution (sums to 1) and, after the last column
    step, each prototype receives B/K of the mass up to the residual of the iterations. The global
    maximum of g_t is subtracted first (a common factor of Q, which the first scaling removes), so
    learnable prototype norms cannot overflow exp.
    """
    logits = teacher_logits.float() / temperature
    top = logits.max().reshape(1)
    if world_size() > 1:
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp(logits - top).t()  # K × B_local
    k, b = q.shape[0], q.shape[1] * world_size()
    q /= sum_over_processes(q.sum())
    for _ in range(iterations):
        q /= sum_over_processes(q.sum(dim=1, keepdim=True)) * k
        q /= q.sum(dim=0, keepdim=True) * b
    return (q * b).t()


def koleo_loss(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko–Leonenko entropy estimator as a loss (Sablayrolles et al. 2019; DINOv2 Sec. 4):
    −(1/B) Σ_b log(‖x̂_b − x̂_{n(b)}‖ + ε), x̂ = x / ‖x‖ and n(b) the nearest other row of the batch."""
    x = F.normalize(features.float(), dim=-1, eps=eps)
    with torch.no_grad():
        dots = x @ x.t()
        dots.fill_diagonal_(-2.0)  # below any cosine: a row is never its own neighbour
        nearest = dots.argmax(dim=1)
    return -torch.log(F.pairwise_distance(x, x[nearest], eps=eps) + eps).mean()


def mean_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean over rows of H(p) = −Σ_k p(k) log p(k) (0·log 0 = 0), in nats.

    Logged with the KL divergence (the loss minus this teacher entropy, as every teacher crop
    has the same number of student partners), the two quantities by which the DINO paper
    (Sec. 5.3, Fig. 7) tells its two collapses apart: H → log K with KL → 0 is collapse to the
    uniform distribution, H → 0 with KL → 0 collapse to one prototype; learning keeps KL > 0.
    """
    return -torch.special.xlogy(probs, probs).sum(-1).mean()


def updated_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float) -> torch.Tensor:
    """c ← m·c + (1 − m)·mean(g_t), the mean over every teacher output of the global batch.

    Each process holds the same number of rows, so the mean over processes of the local means
    is the global-batch mean.
    """
    batch_center = mean_over_processes(teacher_logits.float().mean(0, keepdim=True))
    return center * momentum + batch_center * (1 - momentum)


def teacher_temp_at(epoch: float, start: float, end: float, warmup_epochs: float) -> float:
    """τ_t(e) = start + (end − start)·e / E_w for e < E_w, then ``end`` (per step; the official
    schedule takes the same line in whole-epoch steps)."""
    if warmup_epochs <= 0 or epoch >= warmup_epochs:
        return end
    return start + (end - start) * epoch / warmup_epochs


class DINO(nn.Module):
    """DINO objective: ``forward(global1, global2, *local_crops) → {"loss": ...}``.

    Call :meth:`update_momentum` and :meth:`set_epoch` before each step and
    :meth:`cancel_gradients` between backward and the optimiser step.
    """

    def __init__(self, encoder: ViTEncoder, *, out_dim: int = 4096, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 student_temp: float = 0.1, teacher_temp: float = 0.04, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_epochs: float = 0.0, center_momentum: float = 0.9,
                 freeze_last_layer: float = 1.0, norm_last_layer: bool = True, centering: str = "ema",
                 sinkhorn_iterations: int = 3, koleo_weight: float = 0.0,
                 global_scale: tuple[float, float] = (0.4, 1.0), local_scale: tuple[float, float] = (0.05, 0.4), local_crops: int = 0,
                 local_size: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = DINOHead(encoder.embed_dim, out_dim, hidden_dim, bottleneck_dim, norm_last_layer)
        self.teacher = copy.deepcopy(encoder)
        self.teacher_head = copy.deepcopy(self.head)
        for p in (*self.teacher.parameters(), *self.teacher_head.parameters()):
            p.requires_grad = False
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.student_temp, self.center_momentum = student_temp, center_momentum
        if centering not in DINO_CENTERINGS:
            raise ValueError(f"unknown DINO centring '{centering}'; valid: {list(DINO_CENTERINGS)}")
        self.centering, self.sinkhorn_iterations, self.koleo_weight = centering, sinkhorn_iterations, koleo_weight
        self.temps = (warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs)
        self.freeze_last_layer = freeze_last_layer
        self.view_specs: tuple[ViewSpec, ...] = dino_views(global_scale, local_scale, local_crops)
        self.local_size = local_size or default_local_size(encoder)
        self.epoch = 0.0
        self.train()

    def train(self, mode: bool = True) -> DINO:
        """The student follows ``mode``; the teacher always runs in eval mode (no drop-path)."""
        super().train(mode)
        self.teacher.eval()
        self.teacher_head.eval()
        return self

    def set_epoch(self, epoch: float) -> None:
        """Training progress in epochs (teacher temperature, last-layer freeze)."""
        self.epoch = epoch

    def teacher_temp(self) -> float:
        start, end, warmup = self.temps
        return teacher_temp_at(self.epoch, start, end, warmup)

    def make_views(self, images: torch.Tensor, rnd: BatchRandom, mean: torch.Tensor, std: torch.Tensor
                   ) -> tuple[torch.Tensor, ...]:
        sizes = [self.encoder.img_size] * 2 + [self.local_size] * (len(self.view_specs) - 2)
        return tuple(make_view(images, spec, size, mean, std, rnd) for spec, size in zip(self.view_specs, sizes))

    @torch.no_grad()
    def update_momentum(self, m: float) -> None:
        """θ_t ← m·θ_t + (1 − m)·θ_s for encoder and head."""
        student = [p for mod in (self.encoder, self.head) for p in mod.parameters()]
        teacher = [p for mod in (self.teacher, self.teacher_head) for p in mod.parameters()]
        torch._foreach_lerp_(teacher, student, 1.0 - m)

    def cancel_gradients(self) -> None:
        """Drop the last layer's gradients while ``epoch < freeze_last_layer`` (official
        ``cancel_gradients_last_layer``)."""
        if self.epoch < self.freeze_last_layer:
            for p in self.head.last_layer():
                p.grad = None

    def student_outputs(self, views: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(pooled encoder outputs of the two global crops ``[2B, D]``, head outputs of every crop);
        crops of one size share one encoder pass."""
        enc = self.encoder
        feats = [enc.pooled(enc(torch.cat(views[:2])))]
        if len(views) > 2:
            feats.append(enc.pooled(enc(torch.cat(views[2:]))))
        return feats[0], list(self.head(torch.cat(feats)).chunk(len(views)))

    def teacher_assignments(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        """P_t of the global crops: EMA-centred softmax (updating the centre), or Sinkhorn–Knopp."""
        if self.centering == "sinkhorn":
            return sinkhorn_knopp(teacher_logits, self.teacher_temp(), self.sinkhorn_iterations)
        probs = teacher_probs(teacher_logits, self.center, self.teacher_temp())
        self.center.copy_(updated_center(self.center, teacher_logits, self.center_momentum))
        return probs

    def forward(self, *views: torch.Tensor) -> dict[str, torch.Tensor]:
        feats, student = self.student_outputs(views)
        with torch.no_grad():
            t = self.teacher_head(self.teacher.pooled(self.teacher(torch.cat(views[:2])))).float()
            probs = self.teacher_assignments(t)
            h = mean_entropy(probs)
        distill = dino_loss(student, list(probs.chunk(2)), self.student_temp)
        out = {"loss": distill, "teacher_entropy": h, "kl": distill.detach() - h}
        if self.koleo_weight:
            koleo = sum(koleo_loss(f) for f in feats.chunk(2))
            out.update(loss=distill + self.koleo_weight * koleo, loss_dino=distill.detach(), koleo=koleo.detach())
        return out


def default_local_size(encoder: ViTEncoder) -> int:
    """The official local/global size ratio 96/224, rounded to whole patches (12 px for 32-px, /4 models)."""
    patches = max(1, round(encoder.img_size * 96 / 224 / encoder.patch_size))
    return patches * encoder.patch_size
