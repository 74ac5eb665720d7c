"""Results are files: self-describing JSON written atomically, read back by plots/reports."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any


def versions() -> dict[str, str]:
    """Versions of the software that produced a result."""
    import timm
    import torch

    import vitscope

    return {"vitscope": vitscope.__version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version()}


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder + fsync + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; results are ordinary shared files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN written as ``null``)."""
    write_atomic(path, json.dumps(_finite(obj), indent=1, allow_nan=False).encode())


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
