"""Models: :func:`load` any spec, :func:`zoo` the models that ship with vitscope."""

from __future__ import annotations

import os

import pandas as pd
from torch import nn

from vitscope.models import load as load_spec


def load(spec: str | os.PathLike, *, seed: int = 0) -> nn.Module:
    """A timm ViT in eval mode from any model spec; ``seed`` seeds ``random:`` weights.

    Specs: ``zoo:NAME`` (:func:`zoo`), ``timm:NAME``, ``random:NAME``, ``hf:REPO_ID`` or a checkpoint
    path ``PATH[@ARCH]`` (MoCo v3, SimMIM, MAE, DINO, BEiT, timm, ``.safetensors``, vitscope's own), as
    a string or a ``Path``.

    >>> model = vitscope.load("zoo:moco-cifar10")
    """
    return load_spec(os.fspath(spec), seed=seed)


ZOO_COLUMNS = ["name", "spec", "method", "architecture", "data", "epochs", "knn_last_block", "linear_last_block",
               "hardware", "bytes", "sha256"]


def zoo() -> pd.DataFrame:
    """The models vitscope trained and ships (``vitscope zoo``), one row each: ``spec`` to give to
    :func:`load` or any function, method, architecture, training data and epochs, the 20-NN and linear
    probe accuracy of the last block as the manifest records them (``vitscope zoo`` says on what),
    hardware, file size and sha256.

    >>> vitscope.zoo()[["spec", "method", "knn_last_block"]]
    """
    from vitscope.zoo_manifest import manifest

    rows = [{"name": name, "spec": f"zoo:{name}", **{k: e.get(k) for k in ("method", "architecture", "data", "epochs",
                                                                          "hardware", "bytes", "sha256")},
             **{k: (e.get("accuracy") or {}).get(k) for k in ("knn_last_block", "linear_last_block")}}
            for name, e in manifest().items()]
    return pd.DataFrame(rows, columns=ZOO_COLUMNS)
