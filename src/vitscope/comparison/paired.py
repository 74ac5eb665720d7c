"""One image, each model's own preprocessing: a transform that packs both views in one tensor.

The data sets of :mod:`vitscope.data.images` apply one transform and batch tensors with
``torch.stack``; :class:`PairedTransform` applies every model's timm eval transform to
the same decoded image and concatenates the flattened results, and :meth:`split` turns a
batch back into one ``[B, C, H, W]`` tensor per model. Models with identical transforms
share one view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image

Transform = Callable[[Image.Image], torch.Tensor]


class PairedTransform:
    """``PIL image → [F_1 + … + F_m]``: the flattened views of the distinct transforms."""

    def __init__(self, transforms: Sequence[Transform], keys: Sequence[str]) -> None:
        if len(transforms) != len(keys):
            raise ValueError("one key per transform")
        self.views: list[Transform] = []
        self.view_of: list[int] = []  # model → view index
        seen: dict[str, int] = {}
        for t, key in zip(transforms, keys):
            if key not in seen:
                seen[key] = len(self.views)
                self.views.append(t)
            self.view_of.append(seen[key])
        # eval transforms resize and crop to a fixed size: probe each once for its output shape
        # (in this process; loader workers get their own copies)
        probe = Image.new("RGB", (64, 48))
        self.shapes: list[torch.Size] = [t(probe).shape for t in self.views]

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return torch.cat([t(img).reshape(-1) for t in self.views])

    def split(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """``[B, F_1 + … + F_m]`` → one ``[B, C, H, W]`` per model (models sharing a view share it)."""
        sizes = [s.numel() for s in self.shapes]
        views = [part.reshape(len(batch), *s) for part, s in zip(batch.split(sizes, dim=1), self.shapes)]
        return [views[i] for i in self.view_of]
