"""Results on disk, written atomically (temporary file in the same folder, then ``os.replace``)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def _finite(obj: Any) -> Any:
    """NaN / inf → None, so the JSON is standard (no ``NaN`` tokens)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented standard JSON at ``path``, atomically."""
    text = json.dumps(_finite(obj), indent=2, allow_nan=False)

    def write(tmp: str) -> None:
        Path(tmp).write_text(text + "\n")

    _atomic(path, write)


def save_figure(fig: Any, path: Path) -> None:
    """A matplotlib figure as PNG at ``path``, atomically."""
    _atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
