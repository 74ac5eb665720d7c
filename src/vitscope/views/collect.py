"""Images in, per-block tensors out: the few images ``inspect`` looks at, kept whole.

Unlike ``analysis`` (which reduces every tensor inside the hook), ``inspect`` draws
single images, so it keeps the requested taps of a handful of images on the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from vitscope.data.images import UnreadableImage, read_image
from vitscope.data.sources import DataSource, describe_data, open_data
from vitscope.data.transforms import model_transform
from vitscope.errors import VitscopeError
from vitscope.models.finite import check_finite_activations
from vitscope.runtime import autocast
from vitscope.taps import Taps

MAX_TSNE_IMAGES = 18
MAX_CLASSES = 3


@dataclass
class Images:
    """Preprocessed images (model inputs), their names and class names (parent folder)."""

    tensors: torch.Tensor  # [B, 3, H, W], normalised as the model expects
    names: list[str]
    classes: list[str]
    skipped: list[str]


def distinct_labels(paths: Sequence[Path]) -> list[str]:
    """The shortest trailing parts of ``paths`` that tell different files apart: file names where
    they differ, ``cat/0000.jpg`` and ``ship/0000.jpg`` for two ``0000.jpg`` in different folders.

    The same file given twice keeps one label; every other pair of labels differs.
    """
    parts = [Path(p).resolve().parts for p in paths]
    files = len(set(parts))
    for depth in range(1, max(map(len, parts), default=0) + 1):
        labels = ["/".join(q[-depth:]) for q in parts]
        if len(set(labels)) == files:
            return labels
    return ["/".join(q) for q in parts]


def from_paths(paths: Sequence[Path], model: nn.Module) -> Images:
    """Read ``paths`` (each must be readable) with the model's eval transform; names are
    :func:`distinct_labels`."""
    transform = model_transform(model)
    tensors = []
    for p in paths:
        if not Path(p).is_file():
            raise VitscopeError(f"cannot read image '{p}': no such file")
        try:
            tensors.append(transform(read_image(Path(p))))
        except UnreadableImage as e:  # read_image names the decoder's error
            raise VitscopeError(f"cannot read image '{p}': {str(e).splitlines()[0]}") from e
    return Images(torch.stack(tensors), distinct_labels(paths), [Path(p).parent.name for p in paths], [])


def _class_names(ds: Any, source: DataSource) -> list[str]:
    """The class name of every image of ``ds``; unlabelled images are one class, named after the folder."""
    unlabelled = Path(source).name if isinstance(source, (str, os.PathLike)) else "images"
    return [ds.classes[y] if y >= 0 and ds.classes else (str(y) if y >= 0 else unlabelled) for y in ds.labels]


def _readable(ds: Any, order: Iterable[int], n: int | None, source: DataSource
              ) -> tuple[list[torch.Tensor], list[int], list[str]]:
    """Items of ``ds`` read in ``order`` until ``n`` are readable (all when None): their tensors,
    indices, and the messages of the unreadable ones met on the way."""
    tensors: list[torch.Tensor] = []
    picked: list[int] = []
    skipped: list[str] = []
    for index in order:
        if n is not None and len(picked) == n:
            break
        x, _, i, err = ds[index]
        if x is None:
            skipped.append(err or ds.name(i))
        else:
            tensors.append(x)
            picked.append(i)
    if not picked:
        raise VitscopeError(f"no readable images in '{describe_data(source)}' ({len(skipped)} unreadable)")
    return tensors, picked, skipped


def from_data(source: DataSource, model: nn.Module, n: int, seed: int, classes: Sequence[str] = ()) -> Images:
    """A seeded choice of ``n`` readable images of ``source`` (an image folder or any
    :data:`~vitscope.data.sources.DataSource`), spread evenly over ``classes`` (default: the first
    three classes, sorted; unlabelled images count as one class, named after the folder)."""
    if n <= 0:
        raise VitscopeError(f"number of images must be positive, got {n}")
    ds: Any = open_data(source, model_transform(model))
    names = _class_names(ds, source)
    chosen = list(classes) or list(dict.fromkeys(sorted(set(names))))[:MAX_CLASSES]
    missing = [c for c in chosen if c not in names]
    if missing:
        raise VitscopeError(f"no class folder {missing} in '{describe_data(source)}'; it has {sorted(set(names))[:10]}")
    g = torch.Generator().manual_seed(seed)
    pools = {c: [i for i, nm in enumerate(names) if nm == c] for c in chosen}
    pools = {c: [idx[j] for j in torch.randperm(len(idx), generator=g).tolist()] for c, idx in pools.items()}
    rounds = max(len(p) for p in pools.values())  # round-robin over classes: image 1 of each class, then 2, ...
    tensors, picked, skipped = _readable(ds, [pools[c][k] for k in range(rounds) for c in chosen
                                              if k < len(pools[c])], n, source)
    order = sorted(range(len(picked)), key=lambda j: (chosen.index(names[picked[j]]), j))
    return Images(torch.stack([tensors[j] for j in order]), [ds.name(picked[j]) for j in order],
                  [names[picked[j]] for j in order], skipped)


def first_images(source: DataSource, model: nn.Module, n: int | None = None) -> Images:
    """The first ``n`` readable images of ``source`` (all when None), in order, preprocessed for ``model``."""
    if n is not None and n <= 0:
        raise VitscopeError(f"number of images must be positive, got {n}")
    ds: Any = open_data(source, model_transform(model))
    tensors, picked, skipped = _readable(ds, range(len(ds)), n, source)
    names = _class_names(ds, source)
    return Images(torch.stack(tensors), [ds.name(i) for i in picked], [names[i] for i in picked], skipped)


def collect(model: nn.Module, images: torch.Tensor, taps: Iterable[str], *, device: torch.device,
            precision: str = "fp32", batch_size: int = 8, progress: bool = False) -> dict[str, list[torch.Tensor]]:
    """``{tap: [tensor of block 0, block 1, ...]}`` for all ``images``, float32 on the CPU (a
    progress bar over the images when ``progress``)."""
    if batch_size <= 0:
        raise VitscopeError(f"--batch-size must be positive, got {batch_size}")
    model = model.to(device).eval()
    out: dict[str, list[list[torch.Tensor]]] = {}

    def keep(layer: int, tap: str, x: torch.Tensor) -> None:
        per_layer = out.setdefault(tap, [])
        while len(per_layer) <= layer:
            per_layer.append([])
        per_layer[layer].append(x.float().cpu())

    with Taps(model, taps, keep) as hooks, torch.inference_mode(), \
            tqdm(range(0, len(images), batch_size), desc="inspect", unit="batch", disable=not progress) as bar:
        for start in bar:
            x = images[start:start + batch_size].to(device)
            with autocast(device, precision):
                features = model.forward_features(x)
                check_finite_activations(model, features, lambda: model.forward_features(x))
            hooks.check()
    return {tap: [torch.cat(parts) for parts in layers] for tap, layers in out.items()}
