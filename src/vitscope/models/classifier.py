"""A classifier over images: a model's own head, or a linear probe saved by ``vitscope probe``.

Probe file format (``torch.save`` of plain tensors and strings, read with
``weights_only=True``)::

    {"format": "vitscope-probe", "version": 1,
     "model": "<model spec>", "feature": "pooled" | "cls" | "gap" | "gap_noprefix",
     "layer": int   # block index whose output is read; -1 = the model's final features
     "classes": [str, ...],
     "bn_mean": [D], "bn_var": [D], "bn_eps": float,   # BatchNorm without affine (MAE protocol)
     "weight": [C, D], "bias": [C]}

``feature`` ``"pooled"`` means timm's own pooled pre-logits (``forward_head(...,
pre_logits=True)``) of the final features; the others are read from block ``layer``'s
output: CLS token, mean of all tokens, or mean of the patch tokens only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vitscope.choices import TOKEN_FEATURES
from vitscope.errors import VitscopeError
from vitscope.metrics.tokens import pool_tokens
from vitscope.taps import Taps

PROBE_FORMAT = "vitscope-probe"
FEATURES = ("pooled", *TOKEN_FEATURES)


class LinearProbe(nn.Module):
    """BatchNorm without affine (frozen statistics) followed by a linear layer."""

    def __init__(self, mean: torch.Tensor, var: torch.Tensor, eps: float, weight: torch.Tensor,
                 bias: torch.Tensor) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(mean.numel(), eps=eps, affine=False)
        self.bn.running_mean.copy_(mean)
        self.bn.running_var.copy_(var)
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        self.linear.weight.data.copy_(weight)
        self.linear.bias.data.copy_(bias)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.bn(x))


class ProbedClassifier(nn.Module):
    """``images → logits`` through a frozen backbone and a saved linear probe."""

    def __init__(self, backbone: nn.Module, probe: LinearProbe, feature: str, layer: int) -> None:
        super().__init__()
        self.backbone, self.probe, self.feature, self.layer = backbone, probe, feature, layer
        self.num_prefix_tokens = int(getattr(backbone, "num_prefix_tokens", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.feature == "pooled":
            feats = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
        else:
            layer = self.layer % len(self.backbone.blocks)
            got: list[torch.Tensor] = []
            with Taps(self.backbone, {"block_out"}, lambda _l, _t, t: got.append(t), layers=[layer]) as taps:
                self.backbone.forward_features(x)
                taps.check()
            feats = pool_tokens(got[0], self.feature, self.num_prefix_tokens)
        return self.probe(feats.float())


def load_probe(path: str | Path) -> tuple[LinearProbe, dict]:
    """Read a probe file; raise :class:`VitscopeError` if it is not one."""
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise VitscopeError(f"cannot read probe file {path}: {e}") from e
    if not isinstance(d, dict) or d.get("format") != PROBE_FORMAT:
        raise VitscopeError(f"{path} is not a vitscope probe file (format '{PROBE_FORMAT}')")
    probe = LinearProbe(d["bn_mean"], d["bn_var"], float(d["bn_eps"]), d["weight"], d["bias"])
    return probe, d


def classifier(model: nn.Module, probe_path: str | Path | None = None) -> tuple[nn.Module, list[str] | None]:
    """A module mapping images to logits, and its class names when known.

    Without a probe the model must have its own head (``num_classes > 0``).
    """
    if probe_path is None:
        if int(getattr(model, "num_classes", 0)) <= 0:
            raise VitscopeError(
                f"model '{getattr(model, 'vitscope_spec', type(model).__name__)}' has no classifier head: "
                "pass a linear probe trained with `vitscope probe`"
            )
        return model.eval(), None
    probe, meta = load_probe(probe_path)
    return ProbedClassifier(model, probe, meta["feature"], int(meta["layer"])).eval(), list(meta["classes"])
