"""Training images as uint8 batches: whole small data sets on the device, large ones streamed.

:class:`DeviceImages` keeps a whole data set (CIFAR-10: 50,000 × 3 × 32 × 32 = 150 MB) as
one uint8 tensor on the training device; a step is then an index gather plus the batched
augmentations of :mod:`vitscope.train.augment`, with no host work. Image folders are
decoded once and cached as ``.npz`` in ``$VITSCOPE_DATA`` (default ``~/.cache/vitscope``).
:class:`StreamedImages` reads large folders through a DataLoader (``open_dataset``),
resizing each image to ``load_size`` (shorter side, centre crop) as uint8; the random
crops then happen on the device like for resident data.

Both shard the same seeded per-epoch permutation: global batch ``s`` is
``perm[s·B:(s+1)·B]``, of which process ``r`` takes rows ``[r·B/W, (r+1)·B/W)``; the last
incomplete batch is dropped.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vitscope.data.images import ArrayImages, collate, open_dataset, read_image, subset_indices
from vitscope.errors import VitscopeError
from vitscope.results import atomic_write
from vitscope.stopping import ignore_stop_signals

log = logging.getLogger(__name__)

#: Folders whose images are at most this many pixels a side are loaded whole ("auto").
RESIDENT_MAX_SIDE = 96
RESIDENT_MAX_BYTES = 4 << 30


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The seeded permutation of ``n`` indices used in ``epoch`` (same on every process)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g)


def cache_dir() -> Path:
    return Path(os.environ.get("VITSCOPE_DATA", Path.home() / ".cache" / "vitscope"))


def _folder_key(root: Path) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    h = hashlib.sha1(str(root.resolve()).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _to_array(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())


def _decode_folder(root: Path, workers: int) -> tuple[np.ndarray, np.ndarray]:
    ds = open_dataset(str(root), _to_array)
    loader = DataLoader(ds, batch_size=512, num_workers=workers, collate_fn=_stack_same_size,
                        worker_init_fn=ignore_stop_signals)
    images, labels = [], []
    for arr, lab in loader:
        images.append(arr)
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels)


def _stack_same_size(items: list) -> tuple[np.ndarray, np.ndarray]:
    ok = [it for it in items if it[0] is not None]
    for it in items:
        if it[0] is None:
            log.warning("skipped unreadable image %s", it[3])
    shapes = {tuple(it[0].shape) for it in ok}
    if len(shapes) > 1:
        raise VitscopeError(f"images differ in size ({sorted(shapes)[:3]} ...): use --set data_on_device=no "
                            "to stream them resized")
    return np.stack([it[0].numpy() for it in ok]), np.asarray([it[1] for it in ok], dtype=np.int64)


def load_folder_cached(root: Path, workers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """All images of a same-size folder as uint8 ``[N, H, W, 3]`` + labels, decoded once and cached."""
    path = cache_dir() / f"folder-{root.name}-{_folder_key(root)}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["images"], z["labels"]
    log.info("decoding %s once into %s", root, path)
    images, labels = _decode_folder(root, workers)
    atomic_write(path, lambda f: np.savez(f, images=images, labels=labels))
    return images, labels


def _first_image_side(root: Path) -> int:
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            try:
                return max(read_image(p).size)
            except Exception:  # noqa: BLE001 - an unreadable file says nothing about the others
                continue
    raise VitscopeError(f"data folder '{root}' holds no readable image")


def wants_resident(spec: str, choice: str) -> bool:
    """Whether ``spec`` should live on the device: ``yes``/``no``, or ``auto`` (arrays, CIFAR, small-image folders)."""
    if choice != "auto":
        return choice == "yes"
    path = Path(spec)
    return not path.is_dir() or _first_image_side(path) <= RESIDENT_MAX_SIDE


def load_arrays(spec: str, workers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``[N, H, W, 3]`` and labels of an array-like data spec (npz, cifar10, folder)."""
    path = Path(spec)
    if path.is_dir():
        return load_folder_cached(path, workers)
    ds = open_dataset(spec, lambda im: im)
    if not isinstance(ds, ArrayImages):
        raise VitscopeError(f"data '{spec}' cannot be loaded whole")
    images = ds.images if ds.images.ndim == 4 else ds.images[..., None]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    if images.shape[-1] != 3:
        raise VitscopeError(f"image arrays must have 1 or 3 channels, got shape {images.shape}")
    return images, ds.labels


def _subset_rows(n: int, num_images: int | None, seed: int) -> np.ndarray | None:
    idx = subset_indices(n, num_images, seed)
    return None if idx is None else np.asarray(idx)


class DeviceImages:
    """A whole data set as one uint8 tensor ``[N, 3, H, W]`` on ``device``."""

    def __init__(self, images: np.ndarray, device: torch.device, *, batch_size: int, rank: int = 0,
                 world: int = 1, seed: int = 0) -> None:
        if batch_size % world:
            raise VitscopeError(f"batch size {batch_size} is not divisible by the {world} processes")
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().to(device)
        self.batch_size, self.rank, self.world, self.seed = batch_size, rank, world, seed
        if self.steps_per_epoch == 0:
            raise VitscopeError(f"{len(self.images)} images are fewer than one batch of {batch_size}")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.images) // self.batch_size

    def epoch(self, epoch: int) -> Iterator[torch.Tensor]:
        """This process's uint8 batches ``[B/W, 3, H, W]`` of ``epoch``."""
        order = epoch_order(len(self.images), self.seed, epoch).to(self.images.device)
        local = self.batch_size // self.world
        for s in range(self.steps_per_epoch):
            start = s * self.batch_size + self.rank * local
            yield self.images[order[start:start + local]]


class _LoadResize:
    """PIL image → uint8 tensor ``[3, S, S]``: shorter side resized to S, centre crop."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, im: Image.Image) -> torch.Tensor:
        w, h = im.size
        scale = self.size / min(w, h)
        im = im.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - self.size) // 2, (h - self.size) // 2
        im = im.crop((left, top, left + self.size, top + self.size))
        return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


class _ShardBatches(torch.utils.data.Sampler):
    def __init__(self, n: int, batch_size: int, rank: int, world: int, seed: int, rows: np.ndarray | None) -> None:
        self.n, self.batch_size, self.rank, self.world, self.seed, self.rows = n, batch_size, rank, world, seed, rows
        self.epoch = 0

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        order = epoch_order(self.n, self.seed, self.epoch).numpy()
        local = self.batch_size // self.world
        for s in range(len(self)):
            idx = order[s * self.batch_size + self.rank * local:][:local]
            yield (self.rows[idx] if self.rows is not None else idx).tolist()


class StreamedImages:
    """A folder too large for the device, read by DataLoader workers as uint8 ``load_size`` squares."""

    def __init__(self, spec: str, device: torch.device, *, load_size: int, batch_size: int, rank: int = 0,
                 world: int = 1, seed: int = 0, num_images: int | None = None, workers: int = 8) -> None:
        if batch_size % world:
            raise VitscopeError(f"batch size {batch_size} is not divisible by the {world} processes")
        ds = open_dataset(spec, _LoadResize(load_size))
        n_all = len(ds)  # type: ignore[arg-type]
        rows = _subset_rows(n_all, num_images, seed)
        n = n_all if rows is None else len(rows)
        self.sampler = _ShardBatches(n, batch_size, rank, world, seed, rows)
        if len(self.sampler) == 0:
            raise VitscopeError(f"{n} images are fewer than one batch of {batch_size}")
        self.loader = DataLoader(ds, batch_sampler=self.sampler, num_workers=workers, collate_fn=collate,
                                 pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                                 worker_init_fn=ignore_stop_signals)
        self.device = device

    @property
    def steps_per_epoch(self) -> int:
        return len(self.sampler)

    def epoch(self, epoch: int) -> Iterator[torch.Tensor]:
        self.sampler.epoch = epoch
        for batch in self.loader:
            for msg in batch.errors:
                log.warning("skipped unreadable image %s", msg)
            if len(batch.images):
                yield batch.images.to(self.device, non_blocking=True)


def open_training_images(spec: str, device: torch.device, *, batch_size: int, rank: int, world: int, seed: int,
                         num_images: int | None, on_device: str, load_size: int, workers: int
                         ) -> DeviceImages | StreamedImages:
    """Resident (:class:`DeviceImages`) or streamed (:class:`StreamedImages`) training images."""
    if wants_resident(spec, on_device):
        images, _ = load_arrays(spec, workers=min(workers, 4))
        rows = _subset_rows(len(images), num_images, seed)
        if rows is not None:
            images = images[rows]
        if images.nbytes > RESIDENT_MAX_BYTES and on_device == "auto":
            log.warning("%s is %.1f GB as uint8; consider --set data_on_device=no", spec, images.nbytes / 1e9)
        return DeviceImages(images, device, batch_size=batch_size, rank=rank, world=world, seed=seed)
    return StreamedImages(spec, device, load_size=load_size, batch_size=batch_size, rank=rank, world=world,
                          seed=seed, num_images=num_images, workers=workers)
