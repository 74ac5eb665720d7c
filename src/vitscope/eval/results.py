"""Writing evaluation results: atomic JSON with provenance, per-block accuracy plots."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch

import vitscope


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (numpy scalars/arrays become plain numbers/lists)."""

    def plain(o: Any) -> Any:
        if isinstance(o, np.ndarray | torch.Tensor):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"cannot write {type(o).__name__} to JSON")

    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=plain) + "\n").encode())


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file and ``os.replace`` (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def provenance(**fields: Any) -> dict[str, Any]:
    """Where the numbers came from: the given fields plus versions, time and command line."""
    return {
        **fields,
        "versions": {
            "vitscope": vitscope.__version__,
            "torch": torch.__version__,
            "timm": timm.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
    }


def plot_per_block(curves: Mapping[str, Sequence[float]], path: Path, title: str,
                   reference: Mapping[str, float] | None = None) -> None:
    """Accuracy (%) against block index (1-based), one line per feature type; PNG, atomic.

    ``reference`` draws horizontal dashed lines (e.g. the linear probe on the final features).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for name, acc in curves.items():
        blocks = np.arange(1, len(acc) + 1)
        ax.plot(blocks, 100 * np.asarray(acc, dtype=float), marker="o", ms=3, label=name)
    for name, acc in (reference or {}).items():
        ax.axhline(100 * acc, ls="--", lw=1, color="grey", label=name)
    ax.set_xlabel("block")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
