"""Images in, per-block tensors out: the few images ``inspect`` looks at, kept whole.

Unlike ``analysis`` (which reduces every tensor inside the hook), ``inspect`` draws
single images, so it keeps the requested taps of a handful of images on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from vitscope.capture import Taps
from vitscope.data.images import ImageFolder, UnreadableImage, read_image
from vitscope.data.transforms import model_transform
from vitscope.errors import VitscopeError
from vitscope.models.finite import check_finite_activations
from vitscope.runtime import autocast

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


def from_folder(root: Path, model: nn.Module, n: int, seed: int, classes: Sequence[str] = ()) -> Images:
    """A seeded choice of ``n`` readable images of ``root``, spread evenly over ``classes`` (default:
    the first three class sub-folders, sorted; a flat folder counts as one class)."""
    if n <= 0:
        raise VitscopeError(f"number of images must be positive, got {n}")
    ds = ImageFolder(Path(root), model_transform(model))
    names = [ds.classes[label] if label >= 0 else Path(root).name for label in ds.labels]
    chosen = list(classes) or list(dict.fromkeys(sorted(set(names))))[:MAX_CLASSES]
    missing = [c for c in chosen if c not in names]
    if missing:
        raise VitscopeError(f"no class folder {missing} in '{root}'; it has {sorted(set(names))[:10]}")
    g = torch.Generator().manual_seed(seed)
    pools = {c: [i for i, nm in enumerate(names) if nm == c] for c in chosen}
    pools = {c: [idx[j] for j in torch.randperm(len(idx), generator=g).tolist()] for c, idx in pools.items()}
    tensors, picked, skipped = [], [], []
    while len(picked) < n and any(pools.values()):
        for c in chosen:  # round-robin over classes: image 1 of each class, then image 2, ...
            if pools[c] and len(picked) < n:
                x, _, i, err = ds[pools[c].pop(0)]
                if x is None:
                    skipped.append(err or ds.name(i))
                else:
                    tensors.append(x)
                    picked.append(i)
    if not picked:
        raise VitscopeError(f"no readable images in '{root}' ({len(skipped)} unreadable)")
    order = sorted(range(len(picked)), key=lambda j: (chosen.index(names[picked[j]]), j))
    return Images(torch.stack([tensors[j] for j in order]), [ds.name(picked[j]) for j in order],
                  [names[picked[j]] for j in order], skipped)


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

    with Taps(model, taps, keep) as hooks, torch.inference_mode():
        for start in tqdm(range(0, len(images), batch_size), desc="inspect", unit="batch", disable=not progress):
            x = images[start:start + batch_size].to(device)
            with autocast(device, precision):
                features = model.forward_features(x)
                check_finite_activations(model, features, lambda: model.forward_features(x))
            hooks.check()
    return {tap: [torch.cat(parts) for parts in layers] for tap, layers in out.items()}
