"""What the API functions accept, and turning it into what the layers below take.

A *model* is a spec string (``zoo:moco-cifar10``, ``timm:NAME``, a checkpoint path, ...; see
:data:`vitscope.models.SUPPORTED_SPECS`) or a timm ViT already in memory. *Data* is any
:data:`vitscope.data.sources.DataSource`: a spec or path (image folder, ``.npz``, ``cifar10[:split]``),
an array or tensor of images, ``(images, labels)``, a torch ``Dataset`` or a ``DataLoader``.
Results are result objects (:mod:`vitscope.api.results`) or the folders they were saved in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from vitscope.api.result import PathLike, Result
from vitscope.data.sources import DataSource
from vitscope.results import check_output_folder

ModelLike = str | nn.Module
DataLike = DataSource
ResultLike = Result | PathLike


def names(value: str | Sequence[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` → ``["a", "b"]`` (the command line's comma-separated lists)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def output_folder(out: PathLike | None) -> Path | None:
    """``out`` as a path, checked before any work (:func:`vitscope.results.check_output_folder`)."""
    return None if out is None else check_output_folder(Path(out))


def image_files(data: object) -> list[Path] | None:
    """``data`` as a list of image files when it is one (or a list of them), else None.

    A folder, a ``.npz`` file or ``cifar10[:split]`` is a data set, not an image file.
    """
    items = [data] if isinstance(data, (str, os.PathLike)) else data
    if not isinstance(items, list) or not items or not all(isinstance(p, (str, os.PathLike)) for p in items):
        return None
    paths = [Path(p) for p in items]
    if len(paths) == 1 and (paths[0].is_dir() or paths[0].suffix == ".npz" or str(paths[0]).startswith("cifar10")):
        return None
    return paths
