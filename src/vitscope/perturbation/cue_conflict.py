"""Texture–shape cue-conflict stimuli of Geirhos et al. (ICLR 2019), read as distributed.

Layout: ``<root>/<shape class>/<shape><i>-<texture><j>.png`` (e.g.
``airplane/airplane1-bicycle2.png``: the shape of airplane 1 in the texture of bicycle 2),
either as an extracted folder (any depth above the class folders) or as the uncompressed
``.tar`` itself, read in place. The file name gives both classes; a class folder that
disagrees with the name's shape is refused, as is any image file whose name does not
follow the pattern. Images whose shape and texture class are the same carry no conflict
and are dropped (and counted) by :func:`conflicting`.
"""

from __future__ import annotations

import io
import logging
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.functional import to_tensor

from vitscope.data.images import SKIPPED_ERRORS, Item, Transform, read_image, unreadable
from vitscope.errors import VitscopeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
NAME_PATTERN = re.compile(r"(?P<shape>[a-z]+)(?P<i>\d+)-(?P<texture>[a-z]+)(?P<j>\d+)")
SHOWN_BAD = 5

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stimulus:
    """One cue-conflict image: its path inside the set, shape class and texture class."""

    name: str
    shape: str
    texture: str


def parse_stimulus(relpath: str) -> Stimulus:
    """``".../<folder>/<shape><i>-<texture><j>.<ext>"`` → :class:`Stimulus`; ValueError if malformed."""
    parts = relpath.split("/")
    stem, _, ext = parts[-1].rpartition(".")
    m = NAME_PATTERN.fullmatch(stem)
    if m is None or "." + ext.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"'{relpath}' is not named <shape><i>-<texture><j>.png (e.g. airplane1-bicycle2.png)")
    if len(parts) > 1 and parts[-2] != m["shape"]:
        raise ValueError(f"'{relpath}' has shape '{m['shape']}' but sits in class folder '{parts[-2]}'")
    return Stimulus(relpath, m["shape"], m["texture"])


def _parse_all(names: Sequence[str], where: str) -> list[Stimulus]:
    stimuli, bad = [], []
    for name in names:
        try:
            stimuli.append(parse_stimulus(name))
        except ValueError as e:
            bad.append(str(e))
    if bad:
        shown = "; ".join(bad[:SHOWN_BAD]) + (f"; ... ({len(bad) - SHOWN_BAD} more)" if len(bad) > SHOWN_BAD else "")
        raise VitscopeError(f"{len(bad)} malformed cue-conflict file name(s) in {where}: {shown}")
    if not stimuli:
        raise VitscopeError(f"no cue-conflict images (*.png) in {where}")
    return stimuli


def _is_image(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_SUFFIXES)


def _safe_name(name: str) -> bool:
    """A member name that stays inside the archive: relative, no ``..`` component."""
    return not name.startswith("/") and ".." not in name.split("/")


def tar_image_offsets(members: Sequence[tarfile.TarInfo], where: str) -> dict[str, tuple[int, int]]:
    """``{name: (data offset, size)}`` of the image members of a plain tar, read in place later.

    Only the archive's own bytes are ever read: regular members, and hard links to regular
    members (their data is the target's). Symbolic links, devices and names that are absolute or
    hold ``..`` are not stimuli; they are counted in a warning. Nothing is extracted.
    """
    regular = {m.name: (m.offset_data, m.size) for m in members if m.isfile()}
    offsets, refused = {}, []
    for m in members:
        if m.isdir() or not _is_image(m.name):
            continue
        target = m.name if m.isfile() else m.linkname if m.islnk() else None
        if target in regular and _safe_name(m.name):
            offsets[m.name] = regular[target]
        else:
            refused.append(m.name)
    if refused:
        log.warning("%d member(s) of %s not read (links out of the archive or unsafe names): %s",
                    len(refused), where, ", ".join(refused[:SHOWN_BAD]))
    return offsets


class CueConflictImages(Dataset):
    """The stimuli of a folder or plain ``.tar``; items are ``(image, index, index, error)``.

    ``transform`` maps a PIL image to a tensor (default: float ``[0, 1]``, no resizing).

    For a tar, member offsets are indexed once and each item is read with a plain
    ``seek``/``read``, so DataLoader workers need no shared tar handle.
    """

    def __init__(self, path: str | Path, transform: Transform = to_tensor) -> None:
        self.path = Path(path)
        self.transform = transform
        self._offsets: dict[str, tuple[int, int]] = {}
        if self.path.is_dir():
            names = sorted(str(p.relative_to(self.path).as_posix()) for p in self.path.rglob("*")
                           if p.is_file() and _is_image(p.name))
        elif self.path.is_file() and tarfile.is_tarfile(self.path):
            try:
                with tarfile.open(self.path, "r:") as tf:
                    self._offsets = tar_image_offsets(tf.getmembers(), str(self.path))
            except tarfile.ReadError as e:
                raise VitscopeError(f"{self.path} is a compressed tar ({e}); extract it and pass the folder") from e
            names = sorted(self._offsets)
        elif not self.path.exists():
            raise VitscopeError(f"cue-conflict set '{path}' does not exist (expected a folder or a .tar)")
        else:
            raise VitscopeError(f"cue-conflict set '{path}' is neither a folder nor a .tar archive")
        self.stimuli = _parse_all(names, str(self.path))

    def __len__(self) -> int:
        return len(self.stimuli)

    def _read(self, name: str) -> Image.Image:
        if not self._offsets:
            return read_image(self.path / name)
        offset, size = self._offsets[name]
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        return read_image(io.BytesIO(data))

    def __getitem__(self, i: int) -> Item:
        name = self.stimuli[i].name
        try:
            return self.transform(self._read(name)), i, i, None
        except SKIPPED_ERRORS as e:
            return None, i, i, unreadable(name, e)


@dataclass(frozen=True)
class Selection:
    """Indices of the stimuli kept for a category set, and what was dropped."""

    indices: list[int]
    same_class: int
    outside_map: int


def conflicting(stimuli: Sequence[Stimulus], categories: Sequence[str]) -> Selection:
    """Keep stimuli whose shape ≠ texture and whose both classes are in ``categories``."""
    known = set(categories)
    keep, same, outside = [], 0, 0
    for i, s in enumerate(stimuli):
        if s.shape == s.texture:
            same += 1
        elif s.shape not in known or s.texture not in known:
            outside += 1
        else:
            keep.append(i)
    return Selection(keep, same, outside)
