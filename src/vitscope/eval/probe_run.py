"""``vitscope probe``: per-block k-NN and linear probes of a frozen model, results to files.

One run extracts the features of the train and validation sets once
(:mod:`vitscope.eval.features`), then evaluates every block and feature type:

- weighted k-NN (:mod:`vitscope.eval.knn`) per block on each token feature, and on the
  final pooled features;
- linear probes (:mod:`vitscope.eval.linear_probe`), all blocks of a feature type
  trained together, and one on the final pooled features.

:func:`run_probe` returns the content of ``probe.json`` (accuracies per block, final-epoch
probe histories, provenance) and, when asked, the probe file for
:func:`vitscope.models.classifier.classifier` (``probe.pt``); the figures (``knn.png`` /
``linear.png``) are drawn from the results (:func:`vitscope.eval.plots.plot_probe`). With
``out``, features are cached under ``out/features/`` (memory-mapped, reused by a later run on
the same model and data) when model and data are specs: an in-memory model or data set has no
name that would tell a later run whether the cache is its own.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from torch import nn

from vitscope.choices import KNN_K, KNN_TEMPERATURE, TOKEN_FEATURES
from vitscope.data import model_transform
from vitscope.data.sources import DataSource
from vitscope.errors import VitscopeError
from vitscope.eval.features import FINAL_FEATURE, Features, extract_features, parse_features
from vitscope.eval.knn import knn_accuracy_per_block
from vitscope.eval.labelled import check_same_classes, open_labelled
from vitscope.eval.linear_probe import ProbeTraining, fit_probes, probe_file
from vitscope.models import as_vit, spec_of
from vitscope.results import PROBE, provenance
from vitscope.runtime import resolve_device
from vitscope.taps import vit_info

log = logging.getLogger(__name__)


@dataclass
class ProbeRun:
    """Everything ``vitscope probe`` was asked to do: ``model`` a spec or a ViT in memory, the data
    any :data:`~vitscope.data.sources.DataSource` with labels, ``out`` the folder of the feature cache."""

    model: str | nn.Module
    train_data: DataSource
    val_data: DataSource
    out: Path | None = None
    images: int | None = None
    val_images: int | None = None
    knn: bool = True
    linear: bool = True
    features: str = ",".join(TOKEN_FEATURES)
    k: int = KNN_K
    temperature: float = KNN_TEMPERATURE
    training: ProbeTraining = field(default_factory=ProbeTraining)
    batch_size: int = 128
    device: str = "auto"
    save_probe: str | None = None  # "pooled" or "FEATURE:LAYER"
    cache_features: bool = True
    workers: int | None = None
    seed: int = 0


def parse_probe_target(text: str, kinds: tuple[str, ...], depth: int) -> tuple[str, int]:
    """``"pooled"`` → ``("pooled", -1)``; ``"cls:11"`` / ``"gap:-1"`` → ``(kind, block)``."""
    if text == FINAL_FEATURE:
        return FINAL_FEATURE, -1
    kind, _, layer_text = text.partition(":")
    try:
        layer = int(layer_text)
    except ValueError:
        layer = depth
    if kind not in kinds or not -depth <= layer < depth:
        raise VitscopeError(
            f"bad --save-probe '{text}': expected 'pooled' or FEATURE:BLOCK with FEATURE in {list(kinds)} "
            f"and -{depth} ≤ BLOCK < {depth}"
        )
    return kind, layer % depth


def _by_kind(feats: Features, kind: str) -> np.ndarray:
    return feats.pooled[:, None, :] if kind == FINAL_FEATURE else feats.blocks[kind]


def run_probe(run: ProbeRun, progress: bool = False) -> tuple[dict, dict | None]:
    """Do the run described by ``run``; return the results dict and the saved probe's file content
    (None unless ``run.save_probe``); ``results["saved_probe"]["path"]`` is None until it is written."""
    if not (run.knn or run.linear):
        raise VitscopeError("nothing to do: both --no-knn and --no-linear given")
    if run.save_probe and not run.linear:
        raise VitscopeError("--save-probe needs the linear probe (drop --no-linear)")
    if run.knn and not (run.k >= 1 and run.temperature > 0):
        raise VitscopeError(f"k-NN needs --k ≥ 1 and --temperature > 0, got k={run.k}, T={run.temperature}")
    model = as_vit(run.model, seed=run.seed)
    spec = spec_of(run.model)
    info = vit_info(model)
    kinds = parse_features(run.features, info.num_prefix_tokens)
    target = parse_probe_target(run.save_probe, kinds, info.depth) if run.save_probe else None
    device = resolve_device(run.device)
    transform = model_transform(model)
    train = open_labelled(run.train_data, transform, run.images, run.seed)
    val = open_labelled(run.val_data, transform, run.val_images, run.seed)
    check_same_classes(train, val)
    named = all(isinstance(x, (str, os.PathLike)) for x in (run.model, run.train_data, run.val_data))
    cache_root = Path(run.out) / "features" if run.out is not None and run.cache_features and named else None

    feats = {}
    for name, data in (("train", train), ("val", val)):
        key = {"model": spec, "data": data.spec, "seed": run.seed}
        cache = cache_root / name if cache_root is not None else None
        feats[name] = extract_features(model, data, kinds, batch_size=run.batch_size, device=device,
                                       cache_dir=cache, cache_key=key, workers=run.workers, progress=progress)
        log.info("%s features: %d images, %d blocks", name, feats[name].num_images, info.depth)
    tr, va = feats["train"], feats["val"]
    num_classes = train.num_classes
    results: dict = {
        "kind": PROBE,
        "provenance": provenance(
            model=spec, train_data=train.spec, val_data=val.spec,
            train_images=tr.num_images, val_images=va.num_images,
            skipped={"train": len(tr.skipped), "val": len(va.skipped)}, seed=run.seed, device=str(device),
        ),
        "classes": train.classes,
        "depth": info.depth,
        "features": list(kinds),
        "blocks": "block b (1-based) is the output of transformer block b; 'pooled' is the model's "
                  "final pooled pre-logits feature",
    }
    if run.knn:
        results["knn"] = {"k": run.k, "temperature": run.temperature, "accuracy": {
            kind: knn_accuracy_per_block(_by_kind(tr, kind), tr.labels, _by_kind(va, kind), va.labels,
                                         num_classes, run.k, run.temperature, device).tolist()
            for kind in (*kinds, FINAL_FEATURE)
        }}
    state = None
    if run.linear:
        results["linear"] = {}
        probes = {}
        for kind in (*kinds, FINAL_FEATURE):
            probes[kind], results["linear"][kind] = fit_probes(
                _by_kind(tr, kind), tr.labels, _by_kind(va, kind), va.labels, num_classes, run.training, device)
            log.info("linear probe %s: final-epoch accuracy per block %s", kind,
                     np.round(results["linear"][kind]["accuracy"], 3).tolist())
        if target is not None:
            kind, layer = target
            state = probe_file(probes[kind], 0 if kind == FINAL_FEATURE else layer, model_spec=spec,
                               feature=kind, model_layer=layer, classes=train.classes)
            results["saved_probe"] = {"path": None, "feature": kind, "layer": layer}
    return results, state
