"""Do two models predict alike? Kendall's τ of top-k class rankings and top-1 F1 (Shekhar et al., Fig. 4).

Per image, the two models' class scores (logits of their heads or linear probes) are
compared on the classes either model ranks in its top ``k`` (the union of the two top-k
sets, ``k ≤ |union| ≤ 2k``): :func:`topk_kendall_tau` is Kendall's τ-b between the
two score vectors restricted to those classes. τ-b counts a pair of classes tied in one
model's scores as neither concordant nor discordant and corrects the denominator for
ties, ``τ_b = (n_c − n_d) / sqrt((n_0 − n_1)(n_0 − n_2))``, as
``scipy.stats.kendalltau`` (its default ``variant="b"``) does; a model whose scores on
the union are all equal gives NaN, which the averages leave out (and count).

Top-1 agreement is the macro F1 of model B's top-1 classes against model A's taken as
reference: ``F1_c = 2·|A=c ∧ B=c| / (|A=c| + |B=c|)`` averaged over the classes that
either model predicts (``sklearn.metrics.f1_score(a, b, average="macro")``); it is
symmetric in A and B. Micro F1, the plain agreement rate, is reported beside it.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

SPLITS: tuple[str, ...] = ("all", "both_correct", "both_incorrect")


def topk_union(scores_a: torch.Tensor, scores_b: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class indices ``[B, 2k]`` of A's top-k then B's top-k, and a mask ``[B, 2k]`` that drops repeats."""
    ia = scores_a.topk(k, dim=-1).indices
    ib = scores_b.topk(k, dim=-1).indices
    repeat = (ib[:, :, None] == ia[:, None, :]).any(-1)
    keep = torch.cat([torch.ones_like(ia, dtype=torch.bool), ~repeat], dim=1)
    return torch.cat([ia, ib], dim=1), keep


def kendall_tau_b(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Row-wise Kendall τ-b of ``x, y [B, m]`` over the entries where ``mask [B, m]`` is true → ``[B]``.

    ``τ_b = Σ_{i<j} sgn(x_i−x_j)·sgn(y_i−y_j) / sqrt(#{i<j: x_i≠x_j} · #{i<j: y_i≠y_j})``; NaN when
    either row is constant on the mask.
    """
    sx = torch.sign(x[:, :, None] - x[:, None, :])
    sy = torch.sign(y[:, :, None] - y[:, None, :])
    if mask is not None:
        pair = (mask[:, :, None] & mask[:, None, :]).to(sx.dtype)
        sx, sy = sx * pair, sy * pair
    s = (sx * sy).sum((1, 2))
    px, py = sx.abs().sum((1, 2)), sy.abs().sum((1, 2))
    return (s / torch.sqrt(px * py)).to(torch.float64)


def topk_kendall_tau(scores_a: torch.Tensor, scores_b: torch.Tensor, k: int) -> torch.Tensor:
    """Per-image τ-b of the two models' scores on the union of their top-``k`` classes → ``[B]``."""
    idx, keep = topk_union(scores_a, scores_b, k)
    a = scores_a.double().gather(1, idx)
    b = scores_b.double().gather(1, idx)
    return kendall_tau_b(a, b, keep)


def top1_counts(pred_a: torch.Tensor, pred_b: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[3, C]`` counts per class: both predict c, A predicts c, B predicts c."""
    both = torch.bincount(pred_a[pred_a == pred_b], minlength=num_classes)
    return torch.stack([both, torch.bincount(pred_a, minlength=num_classes),
                        torch.bincount(pred_b, minlength=num_classes)]).double()


def macro_f1(counts: torch.Tensor) -> float:
    """Macro F1 of top-1 agreement from :func:`top1_counts`: mean over predicted classes of ``2·both/(A+B)``."""
    both, na, nb = counts
    seen = (na + nb) > 0
    if not bool(seen.any()):
        return math.nan
    return float((2 * both[seen] / (na[seen] + nb[seen])).mean())


class PredictionAgreement:
    """Streaming Fig. 4: mean top-k Kendall τ per split (all / both correct / both incorrect) and top-1 F1.

    States are float64 sums and counts (``O(C + |ks|)``), summed over processes in
    :meth:`compute` when ``torch.distributed`` is initialised. Each ``k`` above the
    number of classes is clipped to it.
    """

    def __init__(self, num_classes: int, ks: tuple[int, ...] = (5, 10, 100), *,
                 device: torch.device | str = "cpu") -> None:
        if num_classes < 2:
            raise ValueError(f"agreement needs at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.ks = tuple(sorted({min(int(k), num_classes) for k in ks}))
        z = dict(dtype=torch.float64, device=torch.device(device))
        self.tau_sum = torch.zeros(len(SPLITS), len(self.ks), **z)
        self.tau_count = torch.zeros(len(SPLITS), len(self.ks), **z)
        self.tau_undefined = torch.zeros(len(SPLITS), len(self.ks), **z)
        self.images = torch.zeros(len(SPLITS), **z)
        self.correct = torch.zeros(2, **z)  # images model A / model B gets right (labelled images only)
        self.labelled = torch.zeros((), **z)
        self.top1 = torch.zeros(3, num_classes, **z)

    def states(self) -> dict[str, torch.Tensor]:
        return {"tau_sum": self.tau_sum, "tau_count": self.tau_count, "tau_undefined": self.tau_undefined,
                "images": self.images, "correct": self.correct, "labelled": self.labelled, "top1": self.top1}

    def update(self, scores_a: torch.Tensor, scores_b: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Add a batch of class scores ``[B, C]`` from each model; ``labels [B]`` (−1 = unknown) split it."""
        if scores_a.shape != scores_b.shape or scores_a.shape[-1] != self.num_classes:
            raise ValueError(f"scores must both be [B, {self.num_classes}], got "
                             f"{tuple(scores_a.shape)} and {tuple(scores_b.shape)}")
        dev = self.tau_sum.device
        scores_a, scores_b = scores_a.detach().to(dev), scores_b.detach().to(dev)
        pred_a, pred_b = scores_a.argmax(-1), scores_b.argmax(-1)
        split = [torch.ones_like(pred_a, dtype=torch.bool)]
        if labels is None:
            labels = torch.full_like(pred_a, -1)
        labels = labels.to(dev)
        known = labels >= 0
        ok_a, ok_b = (pred_a == labels) & known, (pred_b == labels) & known
        split += [ok_a & ok_b, known & ~ok_a & ~ok_b]
        for j, k in enumerate(self.ks):
            tau = topk_kendall_tau(scores_a, scores_b, k)
            defined = ~torch.isnan(tau)
            for i, m in enumerate(split):
                self.tau_sum[i, j] += tau[m & defined].sum()
                self.tau_count[i, j] += (m & defined).sum()
                self.tau_undefined[i, j] += (m & ~defined).sum()
        self.images += torch.stack([m.sum() for m in split]).double()
        self.correct += torch.stack([ok_a.sum(), ok_b.sum()]).double()
        self.labelled += known.sum()
        self.top1 += top1_counts(pred_a, pred_b, self.num_classes)

    def compute(self) -> dict:
        """Means and counts as plain numbers (JSON-ready), over every process."""
        s = {k: v.clone() for k, v in self.states().items()}
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for t in s.values():
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
        tau = s["tau_sum"] / s["tau_count"]
        labelled = float(s["labelled"])
        out: dict = {
            "kendall_tau_b": {
                split: {f"top{k}": _num(tau[i, j]) for j, k in enumerate(self.ks)} for i, split in enumerate(SPLITS)
            },
            "images": {split: int(s["images"][i]) for i, split in enumerate(SPLITS)},
            "tau_undefined": {
                split: {f"top{k}": int(s["tau_undefined"][i, j]) for j, k in enumerate(self.ks)}
                for i, split in enumerate(SPLITS)
            },
            "top1_f1_macro": _num(macro_f1(s["top1"])),
            "top1_agreement": _num(s["top1"][0].sum() / s["top1"][1].sum()),
            "labelled_images": int(labelled),
            "accuracy": [_num(c / labelled) if labelled else None for c in s["correct"]],
        }
        return out


def _num(t: torch.Tensor | float) -> float | None:
    v = float(t)
    return None if math.isnan(v) else v
