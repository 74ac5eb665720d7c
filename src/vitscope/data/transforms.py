"""Preprocessing taken from the model's own timm data config (size, crop, mean/std)."""

from __future__ import annotations

from typing import Any

import timm.data
from torch import nn


def model_data_config(model: nn.Module) -> dict[str, Any]:
    """timm's resolved data config of ``model``: input_size, interpolation, mean, std, crop."""
    return dict(timm.data.resolve_model_data_config(model))


def model_transform(model: nn.Module):  # -> Callable[[PIL.Image], Tensor]
    """The eval transform timm would use for ``model`` (resize, centre crop, normalise)."""
    return timm.data.create_transform(**model_data_config(model), is_training=False)
