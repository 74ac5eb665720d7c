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

from vitscope.errors import VitscopeError


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


def check_output_folder(path: str | Path) -> Path:
    """Before any work: raise :class:`VitscopeError` if output folder ``path`` is a file, or its
    nearest existing ancestor is not a writable folder. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VitscopeError(f"output folder '{path}' exists and is not a folder; choose another --out")
    ancestor = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not ancestor.is_dir():
        raise VitscopeError(f"cannot create output folder '{path}': '{ancestor}' is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise VitscopeError(f"cannot create output folder '{path}': '{ancestor}' is not writable")
    return path


def ensure_dir(path: str | Path) -> Path:
    """Create output folder ``path`` (and its parents) if needed; a path that is a file, a parent
    that is not a folder, no permission or a full disk is a one-line :class:`VitscopeError`."""
    path = check_output_folder(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VitscopeError(f"cannot create output folder '{path}': {e.strerror or e}") from e
    return path


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(file)`` on a temp file beside ``path``, fsync it, rename it over ``path``,
    fsync the folder: after a crash ``path`` is the old file or the new one, never torn.

    An ``OSError`` on the way (full disk, no permission, ``path`` a folder) removes the temp file
    and becomes a one-line :class:`VitscopeError`; ``path`` is left as it was.
    """
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise VitscopeError(f"cannot write '{path}': {e.strerror or e}") from e
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; results are ordinary shared files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise VitscopeError(f"cannot write '{path}': {e.strerror or e}") from e
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


def read_analysis(path: str | Path) -> dict[str, Any]:
    """A ``vitscope analyze`` results file (or its folder); a one-line error for anything else."""
    from vitscope.errors import VitscopeError

    p = Path(path)
    p = p / "results.json" if p.is_dir() else p
    try:
        r = read_json(p)
    except (OSError, ValueError) as e:
        raise VitscopeError(f"cannot read results file {p}: {e}") from e
    if not isinstance(r, dict) or r.get("kind") != "vitscope-analysis":
        raise VitscopeError(f"{p} is not a `vitscope analyze` results file")
    return r
