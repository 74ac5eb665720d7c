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
from vitscope.version import __version__


def versions() -> dict[str, str]:
    """Versions of the software that produced a result."""
    import timm

    return {"vitscope": __version__, "torch": torch.__version__, "timm": timm.__version__,
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
    """The JSON in ``path``, as it is (no checks: results files go through :func:`read_results`)."""
    with open(path) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- results files

#: The version of the results files' layout this vitscope writes (``schema_version``) and reads.
#: Rule for other versions: a newer one is refused (upgrade vitscope); an older one, or a file
#: without the field (written before it existed, version 0), is read when it holds every key of
#: :data:`LAYOUTS`, and refused naming what it lacks otherwise.
SCHEMA_VERSION = 1

ANALYSIS, COMPARE, ROBUSTNESS = "vitscope-analysis", "vitscope-compare", "vitscope-robustness"
PROBE, FINETUNE, INSPECT = "vitscope-probe", "vitscope-finetune", "vitscope-inspect"
SIGNATURE, PRETRAIN, TRAJECTORY = "vitscope-signature", "vitscope-pretrain", "vitscope-trajectory"
#: Kinds the file name alone tells (these files carry no ``kind`` of their own before schema 1).
KIND_OF_NAME = {"probe.json": PROBE, "finetune.json": FINETUNE, "inspect.json": INSPECT, "signature.json": SIGNATURE,
                "pretrain.json": PRETRAIN, "trajectory.json": TRAJECTORY}

#: What every reader of a kind of results file indexes: a key whose value is ``None`` must be
#: present; a dict value is what the key's object must hold (``"[]"``: every element of a list,
#: ``"*"``: every value of an object); a key ending in ``?`` is optional, but checked when present.
LAYOUTS: dict[str, dict[str, Any]] = {
    ANALYSIS: {"model": {"spec": None}, "metrics": {}},
    COMPARE: {"models": {"[]": {"spec": None}}},
    ROBUSTNESS: {"models": {"[]": {"spec": None}}},
    PROBE: {"knn?": {"accuracy": {}}, "linear?": {"*": {"accuracy": None}}},  # as probe_accuracies reads them
    FINETUNE: {},
    INSPECT: {},
    SIGNATURE: {"models": {"[]": {"role": None, "spec": None}},
                "signatures": {"[]": {"spec": None, "flags": {}, "properties": {"[]": {"key": None, "label": None}}}}},
    PRETRAIN: {"config": {"method": None, "model": None}, "training": {"steps": None},
               "log": {"[]": {"step": None, "epoch": None, "loss": None}}},
    TRAJECTORY: {"settings": {"data": None, "metrics": None}, "model": None,
                 "training_loss": {"[]": {"step": None, "loss": None}},
                 "snapshots": {"[]": {"path": None, "step": None, "architecture": {}, "metrics": {}}}},
}


def _metrics(**sections: tuple[str, ...]) -> dict[str, Any]:
    """A layout of optional metric sections (``attention=("nmi", ...)``), each holding its keys."""
    return {"metrics": {f"{name}?": dict.fromkeys(keys) for name, keys in sections.items()}}


#: What each reader indexes beyond :data:`LAYOUTS`, by kind of file it reads.
READERS: dict[str, dict[str, dict[str, Any]]] = {
    "plot": {ANALYSIS: _metrics(
        attention=("nmi", "nmi_std_over_heads", "distance_per_head", "nmi_per_head", "entropy_per_head"),
        similarity=("heads_cosine", "depth_cosine", "tokens_cosine"),
        spectrum=("token_log_sv", "token_delta_log_sv", "image_log_sv", "image_delta_log_sv"),
        fourier=("freqs_over_pi", "delta_log_amplitude", "highest_freq_over_pi"),
        norms=("median", "p99", "outlier_fraction", "neighbour_cosine_outliers", "neighbour_cosine_others",
               "log10_range", "log10_histogram"))},
    "report": {ANALYSIS: _metrics(attention=("distance", "nmi", "nmi_std_over_heads", "entropy"),
                                  similarity=("heads_cosine", "depth_cosine", "tokens_cosine"),
                                  fourier=("highest_freq_over_pi", "delta_log_amplitude_at_highest"),
                                  norms=("median", "p99", "outlier_fraction"))},
    "inspect": {ANALYSIS: _metrics(attention=("nmi_per_head",))},  # the per-head NMI KDE
    "findings": {
        ANALYSIS: _metrics(attention=("distance", "nmi"), spectrum=("token_log_sv",),
                           fourier=("delta_log_amplitude_at_highest",)),
        COMPARE: {"cka": {}, "agreement?": {"kendall_tau_b": {"all": {}}}},
        ROBUSTNESS: {"models": {"[]": {"noise?": {"drop": None}, "shape_bias?": {"shape_bias": None}}}},
        FINETUNE: {"accuracy": None},
    },
}


def missing_keys(obj: Any, layout: dict[str, Any] | None, where: str = "") -> list[str]:
    """The dotted names of what ``layout`` (see :data:`LAYOUTS`) asks for and ``obj`` lacks."""
    if layout is None:
        return []
    if "[]" in layout:
        if not isinstance(obj, list):
            return [f"{where or 'the file'} (a list)"]
        return [m for i, item in enumerate(obj) for m in missing_keys(item, layout["[]"], f"{where}[{i}]")]
    if not isinstance(obj, dict):
        return [f"{where or 'the file'} (an object)"]
    out = []
    for key, sub in layout.items():
        name = key.removesuffix("?")
        if name == "*":
            out += [m for k, v in obj.items() for m in missing_keys(v, sub, f"{where}.{k}" if where else k)]
            continue
        path = f"{where}.{name}" if where else name
        if obj.get(name) is not None:
            out += missing_keys(obj[name], sub, path)
        elif not key.endswith("?") and (name not in obj or sub is not None):  # null where an object belongs
            out.append(path)
    return out


def kind_of(results: dict[str, Any], path: Path) -> str | None:
    """The kind a results file declares (``kind`` or ``format``), else the one its name tells."""
    return results.get("kind") or results.get("format") or KIND_OF_NAME.get(path.name)


def read_results(path: str | Path, kind: str | None = None, reader: str | None = None) -> dict[str, Any]:
    """A vitscope results file, checked: readable JSON, of a known kind (``kind`` when given), of a
    schema version this vitscope reads, holding every key of its :data:`LAYOUTS` and every key
    ``reader`` (one of :data:`READERS`) indexes in it.

    Anything else is one :class:`VitscopeError` line naming the file and what is wrong or missing.
    """
    p = Path(path)
    try:
        r = read_json(p)
    except json.JSONDecodeError as e:
        raise VitscopeError(f"results file {p} is not valid JSON ({e.msg} at line {e.lineno}; truncated?)") from e
    except (OSError, ValueError) as e:
        raise VitscopeError(f"cannot read results file {p}: {getattr(e, 'strerror', None) or e}") from e
    found = kind_of(r, p) if isinstance(r, dict) else None
    if found not in LAYOUTS or (kind is not None and found != kind):
        raise VitscopeError(f"{p} is not a {kind or 'vitscope'} results file" + (f" (its kind is '{found}')" if found else ""))
    version = r.get("schema_version", 0)
    if not isinstance(version, int):
        raise VitscopeError(f"{p} has schema_version {version!r}, not a whole number")
    if version > SCHEMA_VERSION:
        raise VitscopeError(f"{p} has results schema version {version}, newer than this vitscope reads "
                            f"({SCHEMA_VERSION}): upgrade vitscope to read it")
    needs = READERS[reader].get(found) if reader else None
    missing = list(dict.fromkeys(missing_keys(r, LAYOUTS[found]) + missing_keys(r, needs)))
    if missing:
        raise VitscopeError(f"{p} lacks {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                            f"(a {found} file, schema version {version}): rewrite it with this vitscope")
    return r


def write_results(path: str | Path, results: dict[str, Any]) -> None:
    """Atomically write a results file (:func:`write_json`), stamped with :data:`SCHEMA_VERSION`."""
    write_json(path, {"schema_version": SCHEMA_VERSION, **results})


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


def read_analysis(path: str | Path, reader: str | None = None) -> dict[str, Any]:
    """A ``vitscope analyze`` results file (or its folder), checked by :func:`read_results`."""
    p = Path(path)
    return read_results(p / "results.json" if p.is_dir() else p, ANALYSIS, reader)
