"""Any image source as a vitscope data set: specs, arrays and tensors, torch ``Dataset``s and ``DataLoader``s.

:func:`open_data` turns what a user holds into the data set :mod:`vitscope.data.images` yields
(items ``(tensor | None, label, index, error | None)``, the model's ``transform`` applied to an
RGB PIL image), so every source goes through the same preprocessing and gives the same numbers:

``str`` / ``Path``        a data spec (:func:`vitscope.data.images.open_dataset`): an image folder,
                          a ``.npz`` file, ``cifar10[:split]``.
array or tensor           images ``[N, H, W, C]`` or ``[N, C, H, W]`` (C = 1, 3 or 4) or greyscale
                          ``[N, H, W]``; uint8 pixels, or floats in [0, 1] (what
                          ``torchvision.transforms.ToTensor`` gives), rounded to uint8.
``(images, labels)``      the same with integer labels ``[N]``.
``Dataset``               a map-style data set whose items are an image (PIL, array or tensor, as
                          above but one image) or ``(image, label, ...)`` or ``{"image": ..,
                          "label": ..}``; its ``targets`` / ``labels`` and ``classes`` are used
                          when it has them.
``DataLoader``            its ``dataset``: vitscope batches and orders the images itself, so the
                          numbers do not depend on the loader's batch size or sampler.

Images already normalised (values outside [0, 1]) are refused: vitscope applies the model's
own preprocessing (resize, crop, mean/std from its timm data config).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, IterableDataset

from vitscope.data.images import ArrayImages, Item, Transform, open_dataset, to_rgb
from vitscope.errors import VitscopeError

#: What :func:`open_data` accepts (see the module docstring).
DataSource = str | os.PathLike | np.ndarray | torch.Tensor | tuple | Dataset | DataLoader

CHANNELS = (1, 3, 4)


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return np.asarray(x)


def as_image_array(images: Any) -> np.ndarray:
    """Images as uint8 ``[N, H, W, C]`` (or ``[N, H, W]``): channels moved last, floats in [0, 1]
    scaled by 255 and rounded; anything else is a :class:`VitscopeError` saying what is wrong."""
    x = _numpy(images)
    if x.ndim == 4 and x.shape[-1] not in CHANNELS and x.shape[1] in CHANNELS:
        x = x.transpose(0, 2, 3, 1)  # [N, C, H, W] -> [N, H, W, C]
    if x.ndim == 4 and x.shape[-1] not in CHANNELS:
        raise VitscopeError(f"images of shape {list(x.shape)}: expected [N, H, W, C] or [N, C, H, W] "
                            f"with C in {list(CHANNELS)}")
    if x.ndim == 3 and (x.shape[0] in CHANNELS or x.shape[-1] in CHANNELS):
        raise VitscopeError(f"images of shape {list(x.shape)}: one image or N greyscale images [N, H, W]? "
                            f"give one image as a batch [1, H, W, C] or [1, C, H, W]")
    if x.ndim not in (3, 4) or x.shape[0] == 0:
        raise VitscopeError(f"images of shape {list(x.shape)}: expected [N, H, W, C], [N, C, H, W] "
                            f"or [N, H, W] with N > 0")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise VitscopeError(f"images of dtype {x.dtype}: expected uint8 pixels or floats in [0, 1]")
    lo, hi = float(np.min(x)), float(np.max(x))
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 1:
        raise VitscopeError(f"float images must hold pixel values in [0, 1], got values in [{lo:.3g}, {hi:.3g}]"
                            + (" (normalised already? vitscope applies the model's own preprocessing)"
                               if np.isfinite(lo) and lo < 0 else ""))
    return np.round(x * 255.0).astype(np.uint8)


def as_labels(labels: Any, n: int) -> np.ndarray:
    """Integer labels ``[n]`` (``-1`` = unlabelled) from an array, tensor or sequence."""
    y = _numpy(labels)
    if y.ndim != 1 or len(y) != n:
        raise VitscopeError(f"labels of shape {list(y.shape)} for {n} images: expected [{n}]")
    if not np.issubdtype(y.dtype, np.integer):
        raise VitscopeError(f"labels of dtype {y.dtype}: expected integers")
    return y.astype(np.int64)


def to_pil(image: Any) -> Image.Image:
    """One image (PIL, or an array / tensor ``[H, W(, C)]`` / ``[C, H, W]``) as an RGB PIL image."""
    if isinstance(image, Image.Image):
        return to_rgb(image)
    x = _numpy(image)
    if x.ndim not in (2, 3):
        raise VitscopeError(f"a data set item's image has shape {list(x.shape)}: expected [H, W, C], "
                            f"[C, H, W] or [H, W]")
    arr = as_image_array(x[None] if x.ndim == 3 else x[None, ..., None])[0]
    return to_rgb(Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr))


def _label(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def split_item(item: Any) -> tuple[Any, int]:
    """``(image, label)`` of a data set item: an image, ``(image, label, ...)`` or a dict with
    ``image`` / ``img`` and ``label`` / ``labels`` keys (label ``-1`` when there is none)."""
    if isinstance(item, dict):
        image = next((item[k] for k in ("image", "img") if k in item), None)
        if image is None:
            raise VitscopeError(f"a data set item is a dict without 'image' or 'img' key (keys {sorted(item)})")
        return image, _label(next((item[k] for k in ("label", "labels") if k in item), -1))
    if isinstance(item, (tuple, list)):
        if not item:
            raise VitscopeError("a data set item is an empty sequence")
        return item[0], _label(item[1]) if len(item) > 1 else -1
    return item, -1


class TorchImages(Dataset):
    """A user's map-style ``Dataset`` as a vitscope data set: each item's image through the model's
    ``transform``; labels from ``targets`` / ``labels`` when the set has them, else from its items."""

    def __init__(self, dataset: Dataset, transform: Transform) -> None:
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
            raise VitscopeError(f"{type(dataset).__name__} has no length: give a map-style Dataset")
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise VitscopeError(f"{type(dataset).__name__} is empty")
        self.dataset = dataset
        self.transform = transform
        self.classes: list[str] = [str(c) for c in getattr(dataset, "classes", None) or []]
        to_pil(split_item(dataset[0])[0])  # a wrong kind of item fails here, in one line
        self._labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            given = next((getattr(self.dataset, k) for k in ("targets", "labels")
                          if getattr(self.dataset, k, None) is not None), None)
            if given is not None and len(given) == len(self):
                self._labels = as_labels(given, len(self))
            else:  # read every item once
                self._labels = np.array([split_item(self.dataset[i])[1] for i in range(len(self))], dtype=np.int64)
        return self._labels

    def name(self, i: int) -> str:
        return f"#{i}"

    def __getitem__(self, i: int) -> Item:
        image, label = split_item(self.dataset[i])
        return self.transform(to_pil(image)), label, i, None


def open_data(source: DataSource, transform: Transform) -> Dataset:
    """Any :data:`DataSource` as a vitscope data set (module docstring); raise :class:`VitscopeError`
    for what it cannot use."""
    if isinstance(source, (str, os.PathLike)):
        return open_dataset(str(source), transform)
    if isinstance(source, DataLoader):
        return open_data(source.dataset, transform)
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return ArrayImages(as_image_array(source), None, transform)
    if isinstance(source, tuple) and len(source) == 2:
        images = as_image_array(source[0])
        return ArrayImages(images, as_labels(source[1], len(images)), transform)
    if isinstance(source, Dataset):
        return TorchImages(source, transform)
    raise VitscopeError(f"cannot use a {type(source).__name__} as images: give a folder, a .npz file, "
                        "cifar10[:split], an array or tensor of images, (images, labels), a Dataset or a DataLoader")


def describe_data(source: DataSource) -> str:
    """What results record as the data spec: the spec itself, or a short description of an
    in-memory source (``"array uint8 [200, 32, 32, 3]"``)."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, DataLoader):
        return f"DataLoader of {describe_data(source.dataset)}"
    if isinstance(source, (np.ndarray, torch.Tensor)):
        kind = "tensor" if isinstance(source, torch.Tensor) else "array"
        dtype = str(source.dtype).removeprefix("torch.")
        return f"{kind} {dtype} {list(source.shape)}"
    if isinstance(source, tuple) and len(source) == 2:
        return f"{describe_data(source[0])} with labels"
    size = f", {len(source)} items" if hasattr(source, "__len__") else ""
    return f"{type(source).__name__} (Dataset{size})"
