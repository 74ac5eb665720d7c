"""Image sets for analysis: folders, CIFAR-10 through torchvision, ``.npz`` arrays.

``open_dataset(spec, transform)`` returns a dataset whose items are
``(image_tensor | None, label, index, error | None)``; :func:`make_loader` batches them
and drops the unreadable ones, keeping their names and count in :class:`SkipLog` so a run
never stops on one bad file and never hides it either.

Data specs:

``DIR``               an image folder, recursively; the first-level sub-folders are the
                      classes when every image sits in one, else the folder is flat
                      (labels ``-1``).
``FILE.npz``          arrays: ``images`` (or ``x``) ``[N, H, W, C]`` / ``[N, H, W]``
                      uint8, optional ``labels`` (or ``y``) ``[N]`` and ``classes`` (names).
``cifar10[:SPLIT]``   CIFAR-10 through torchvision (``test`` by default, or ``train``),
                      downloaded to ``$VITSCOPE_DATA`` (default ``~/.cache/vitscope``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from vitscope.errors import VitscopeError
from vitscope.stopping import ignore_stop_signals

log = logging.getLogger(__name__)

Transform = Callable[[Image.Image], torch.Tensor]
Item = tuple[torch.Tensor | None, int, int, str | None]


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode → RGB: alpha composited on white, 16/32-bit greyscale rescaled to 8 bit."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


class UnreadableImage(Exception):
    """One image that cannot be decoded: skipped, counted and named, never the end of a run."""


def read_image(source: Path | BinaryIO) -> Image.Image:
    """Open and fully decode an image file (a path or a binary stream) as RGB.

    Any decoder failure — not an image, truncated or corrupt data, a header claiming more
    than ``PIL.Image.MAX_IMAGE_PIXELS``·2 pixels (``DecompressionBombError``), or whatever
    else a codec raises on hostile bytes — becomes :class:`UnreadableImage` naming its type.
    """
    try:
        with Image.open(source) as im:
            im.load()  # truncated / corrupt data fails here, not later
            return to_rgb(im)
    except Exception as e:  # noqa: BLE001 - codecs raise many types on bad bytes; all mean "unreadable"
        raise UnreadableImage(f"{type(e).__name__}: {e}") from e


def unreadable(name: str, error: Exception) -> str:
    """The skip message of one image: ``"NAME: Type: message"`` (decoder errors carry their type)."""
    return f"{name}: {error}" if isinstance(error, UnreadableImage) else f"{name}: {type(error).__name__}: {error}"


# what reading + transforming one image may raise and still be only that image's problem
SKIPPED_ERRORS = (UnreadableImage, OSError, ValueError)


class ImageFolder(Dataset):
    """Every file under ``root`` (recursively, sorted); decoding happens per item."""

    def __init__(self, root: Path, transform: Transform) -> None:
        self.root = Path(root)
        files = sorted(p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise VitscopeError(f"data folder '{root}' contains no files")
        top = {p.relative_to(self.root).parts[0] for p in files if len(p.relative_to(self.root).parts) > 1}
        in_subdirs = all(len(p.relative_to(self.root).parts) > 1 for p in files)
        self.classes: list[str] = sorted(top) if in_subdirs else []
        index = {c: i for i, c in enumerate(self.classes)}
        self.files = files
        self.labels = [index[p.relative_to(self.root).parts[0]] if self.classes else -1 for p in files]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def name(self, i: int) -> str:
        return str(self.files[i].relative_to(self.root))

    def __getitem__(self, i: int) -> Item:
        try:
            return self.transform(read_image(self.files[i])), self.labels[i], i, None
        except SKIPPED_ERRORS as e:
            return None, self.labels[i], i, unreadable(self.name(i), e)


class ArrayImages(Dataset):
    """Images held in memory as uint8 arrays ``[N, H, W, C]`` (or ``[N, H, W]``)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, transform: Transform,
                 classes: Sequence[str] = ()) -> None:
        if images.ndim not in (3, 4) or images.shape[0] == 0:
            raise VitscopeError(f"image array must be [N, H, W(, C)] with N > 0, got shape {images.shape}")
        if images.dtype != np.uint8:
            raise VitscopeError(f"image array must be uint8, got {images.dtype}")
        if labels is not None and len(labels) != len(images):
            raise VitscopeError(f"{len(labels)} labels for {len(images)} images")
        self.images = images
        self.labels = np.full(len(images), -1) if labels is None else np.asarray(labels).astype(np.int64)
        self.transform = transform
        self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.images)

    def name(self, i: int) -> str:
        return f"#{i}"

    def __getitem__(self, i: int) -> Item:
        arr = self.images[i]
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        return self.transform(to_rgb(Image.fromarray(arr))), int(self.labels[i]), i, None


def _load_npz(path: Path, transform: Transform) -> ArrayImages:
    try:
        with np.load(path, allow_pickle=False) as z:
            key = next((k for k in ("images", "x", "X") if k in z), None)
            if key is None:
                raise VitscopeError(f"{path} has no 'images' (or 'x') array; it has {sorted(z.files)}")
            lab = next((k for k in ("labels", "y", "Y") if k in z), None)
            classes = [str(c) for c in z["classes"]] if "classes" in z else ()
            return ArrayImages(z[key], z[lab] if lab else None, transform, classes=classes)
    except (OSError, ValueError) as e:
        raise VitscopeError(f"cannot read {path} as .npz: {e}") from e


def _cifar10(split: str, transform: Transform) -> Dataset:
    from torchvision.datasets import CIFAR10

    if split not in ("train", "test"):
        raise VitscopeError(f"CIFAR-10 split must be 'train' or 'test', got '{split}'")
    root = Path(os.environ.get("VITSCOPE_DATA", Path.home() / ".cache" / "vitscope"))
    try:
        ds = CIFAR10(str(root), train=split == "train", download=True)
    except Exception as e:  # torchvision raises URLError/RuntimeError when offline
        raise VitscopeError(f"could not get CIFAR-10 into {root}: {e}") from e
    return ArrayImages(ds.data, np.asarray(ds.targets), transform, classes=ds.classes)


def open_dataset(spec: str, transform: Transform) -> Dataset:
    """Open a data spec (see module docstring); raise :class:`VitscopeError` if unusable."""
    if spec == "cifar10" or spec.startswith("cifar10:"):
        return _cifar10(spec.partition(":")[2] or "test", transform)
    path = Path(spec)
    if path.is_dir():
        return ImageFolder(path, transform)
    if path.is_file() and path.suffix == ".npz":
        return _load_npz(path, transform)
    if not path.exists():
        raise VitscopeError(f"data '{spec}' does not exist (expected a folder, a .npz file or cifar10[:split])")
    raise VitscopeError(f"cannot read data '{spec}': expected a folder, a .npz file or cifar10[:split]")


@dataclass
class SkipLog:
    """Unreadable images met while iterating: their count and messages."""

    messages: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.messages)


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    errors: list[str]


def collate(items: list[Item]) -> Batch:
    ok = [it for it in items if it[0] is not None]
    errors = [it[3] for it in items if it[0] is None and it[3]]
    if not ok:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), errors)
    return Batch(
        torch.stack([it[0] for it in ok]),  # type: ignore[misc]
        torch.tensor([it[1] for it in ok], dtype=torch.long),
        torch.tensor([it[2] for it in ok], dtype=torch.long),
        errors,
    )


def subset_indices(total: int, n: int | None, seed: int) -> list[int] | None:
    """Sorted indices of a seeded random choice of ``n`` of ``total`` items; None = take all."""
    if n is not None and n <= 0:
        raise VitscopeError(f"number of images must be positive, got {n}")
    if n is None or n >= total:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=g)[:n].sort().values.tolist()


def subset(ds: Dataset, n: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``n`` items (all items, in order, when ``n`` is None or ≥ len)."""
    idx = subset_indices(len(ds), n, seed)  # type: ignore[arg-type]
    return ds if idx is None else Subset(ds, idx)


def make_loader(ds: Dataset, batch_size: int, *, workers: int | None = None, pin: bool = False) -> DataLoader:
    """A DataLoader over ``ds`` that yields :class:`Batch` (bad images dropped, reported)."""
    if batch_size <= 0:
        raise VitscopeError(f"batch size must be positive, got {batch_size}")
    if workers is None:
        workers = min(8, max(0, (os.cpu_count() or 1) - 1))
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                      collate_fn=collate, pin_memory=pin, persistent_workers=False, worker_init_fn=ignore_stop_signals)


def iterate(loader: DataLoader, skips: SkipLog) -> Any:
    """Yield non-empty batches, appending every unreadable image to ``skips`` (and the log)."""
    for batch in loader:
        for msg in batch.errors:
            log.warning("skipped unreadable image %s", msg)
        skips.messages.extend(batch.errors)
        if len(batch.images):
            yield batch
