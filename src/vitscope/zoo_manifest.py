"""The zoo's ``manifest.json``: found, read and described with the standard library only.

One line per shipped model (see :mod:`vitscope.models.zoo`, which loads and adds them). This
module sits one floor below it, beside ``runlog.py``, so that listing the zoo (``vitscope zoo``,
``vitscope.zoo()``) needs neither torch nor timm.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vitscope.errors import VitscopeError

MANIFEST = "manifest.json"


def zoo_dir() -> Path:
    """The zoo folder: ``$VITSCOPE_ZOO`` if set, else the package's own ``vitscope/zoo_models`` (not
    ``vitscope/zoo``: a folder of that name would import as a namespace package over ``vitscope.zoo()``)."""
    env = os.environ.get("VITSCOPE_ZOO")
    return Path(env) if env else Path(__file__).resolve().parent / "zoo_models"


def manifest(folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """``{name: entry}`` from the zoo's ``manifest.json`` (empty when there is none)."""
    path = (folder or zoo_dir()) / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise VitscopeError(f"zoo manifest {path} is unreadable: {e}") from e
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise VitscopeError(f"zoo manifest {path} has no 'models' mapping")
    return models


def describe(name: str, e: Mapping[str, Any]) -> str:
    """One manifest line: ``NAME  method  arch  epochs  budget  k-NN / linear`` (a fine-tuned model:
    its validation accuracy)."""
    acc = e.get("accuracy", {})
    knn, lin = acc.get("knn_last_block"), acc.get("linear_last_block")
    accs = (f"20-NN {knn:.3f}" if knn is not None else "20-NN -") + \
           (f", linear {lin:.3f}" if lin is not None else ", linear -")
    if "source" in e and not acc:
        return (f"zoo:{name:18s} {e.get('method')} {e.get('architecture')}, {e.get('epochs')} epochs on "
                f"{e.get('data')} ({e.get('budget')}); val accuracy {e['training']['val_accuracy']:.3f}")
    return (f"zoo:{name:18s} {e.get('method', '?'):7s} {e.get('architecture', e.get('arch', '?'))}, "
            f"{e.get('epochs', '?')} epochs on {e.get('data', '?')} ({e.get('budget', '?')}); {accs} "
            f"(last block, {acc.get('feature', 'cls')})")
