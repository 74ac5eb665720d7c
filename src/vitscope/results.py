"""Results are files: self-describing JSON and checkpoints, always written atomically.

Every writer goes through a temporary file in the target folder, ``fsync`` and
``os.replace``, so an interrupted run leaves the previous file or the new one, never half
of one. Plots, comparisons and reports read these files back.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch


def versions() -> dict[str, str]:
    """Versions of the software that produced a result."""
    import timm

    import vitscope

    return {"vitscope": vitscope.__version__, "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def provenance(**fields: Any) -> dict[str, Any]:
    """Where numbers came from: ``fields`` plus versions, UTC time and the command line."""
    return {**fields, "versions": versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": list(sys.argv)}


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(file)`` on a temp file beside ``path``, fsync it, rename it over ``path``,
    fsync the folder: after a crash ``path`` is the old file or the new one, never torn."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; results are ordinary shared files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically (a checkpoint is the old one or the new one, never torn)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def to_plain(obj: Any) -> Any:
    """JSON-ready copy: arrays/tensors → lists, numpy scalars → numbers, paths → str, NaN/inf → None."""
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return to_plain(obj.tolist())
    if isinstance(obj, np.generic):
        return to_plain(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as strict, indented JSON (see :func:`to_plain`)."""
    write_atomic(path, (json.dumps(to_plain(obj), indent=1, allow_nan=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def probe_accuracies(probe: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """``{"knn"|"linear": {feature: accuracy per block}}`` from a ``probe.json``.

    The two methods nest differently (``knn.accuracy[feature]`` beside ``k`` and ``T``;
    ``linear[feature].accuracy`` beside each probe's history); every reader goes through here.
    """
    out: dict[str, dict[str, list[float]]] = {}
    if isinstance(probe.get("knn"), dict):
        out["knn"] = dict(probe["knn"].get("accuracy", {}))
    if isinstance(probe.get("linear"), dict):
        out["linear"] = {k: v["accuracy"] for k, v in probe["linear"].items() if isinstance(v, dict)}
    return out
