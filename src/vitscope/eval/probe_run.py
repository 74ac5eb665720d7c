"""``vitscope probe``: per-block k-NN and linear probes of a frozen model, results to files.

One run extracts the features of the train and validation sets once
(:mod:`vitscope.eval.features`), then evaluates every block and feature type:

- weighted k-NN (:mod:`vitscope.eval.knn`) per block on each token feature, and on the
  final pooled features;
- linear probes (:mod:`vitscope.eval.linear_probe`), all blocks of a feature type
  trained together, and one on the final pooled features.

Written to ``out``: ``probe.json`` (accuracies per block, final-epoch probe histories,
provenance), ``knn.png`` / ``linear.png`` (accuracy vs block per feature type),
``probe.pt`` when asked (a probe file for :func:`vitscope.eval.classifier.classifier`)
and ``features/`` (the memory-mapped feature cache, reused by a later run on the same
model and data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitscope.capture import vit_info
from vitscope.data import model_transform
from vitscope.errors import VitscopeError
from vitscope.eval.features import FINAL_FEATURE, TOKEN_FEATURES, Features, extract_features, parse_features
from vitscope.runtime import resolve_device
from vitscope.eval.knn import K, TEMPERATURE, knn_accuracy_per_block
from vitscope.eval.labelled import check_same_classes, open_labelled
from vitscope.eval.linear_probe import ProbeTraining, fit_probes, probe_file, save_probe
from vitscope.eval.plots import plot_per_block
from vitscope.results import PROBE, ensure_dir, provenance, write_results
from vitscope.models import load

log = logging.getLogger(__name__)


@dataclass
class ProbeRun:
    """Everything ``vitscope probe`` was asked to do."""

    model: str
    train_data: str
    val_data: str
    out: Path
    images: int | None = None
    val_images: int | None = None
    knn: bool = True
    linear: bool = True
    features: str = ",".join(TOKEN_FEATURES)
    k: int = K
    temperature: float = TEMPERATURE
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


def run_probe(run: ProbeRun, progress: bool = False) -> dict:
    """Do the run described by ``run``; write its files; return the results dict."""
    if not (run.knn or run.linear):
        raise VitscopeError("nothing to do: both --no-knn and --no-linear given")
    if run.save_probe and not run.linear:
        raise VitscopeError("--save-probe needs the linear probe (drop --no-linear)")
    if run.knn and not (run.k >= 1 and run.temperature > 0):
        raise VitscopeError(f"k-NN needs --k ≥ 1 and --temperature > 0, got k={run.k}, T={run.temperature}")
    model = load(run.model, seed=run.seed)
    info = vit_info(model)
    kinds = parse_features(run.features, info.num_prefix_tokens)
    target = parse_probe_target(run.save_probe, kinds, info.depth) if run.save_probe else None
    device = resolve_device(run.device)
    transform = model_transform(model)
    train = open_labelled(run.train_data, transform, run.images, run.seed)
    val = open_labelled(run.val_data, transform, run.val_images, run.seed)
    check_same_classes(train, val)
    out = Path(run.out)
    ensure_dir(out)

    feats = {}
    for name, data in (("train", train), ("val", val)):
        key = {"model": run.model, "data": data.spec, "seed": run.seed}
        cache = out / "features" / name if run.cache_features else None
        feats[name] = extract_features(model, data, kinds, batch_size=run.batch_size, device=device,
                                       cache_dir=cache, cache_key=key, workers=run.workers, progress=progress)
        log.info("%s features: %d images, %d blocks", name, feats[name].num_images, info.depth)
    tr, va = feats["train"], feats["val"]
    num_classes = train.num_classes
    results: dict = {
        "kind": PROBE,
        "provenance": provenance(
            model=run.model, train_data=run.train_data, val_data=run.val_data,
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
            state = probe_file(probes[kind], 0 if kind == FINAL_FEATURE else layer, model_spec=run.model,
                               feature=kind, model_layer=layer, classes=train.classes)
            save_probe(out / "probe.pt", state)
            results["saved_probe"] = {"path": str(out / "probe.pt"), "feature": kind, "layer": layer}
    write_results(out / "probe.json", results)
    _plots(results, out, run.model)
    return results


def _plots(results: dict, out: Path, model: str) -> None:
    for method in ("knn", "linear"):
        if method not in results:
            continue
        acc = results[method]["accuracy"] if method == "knn" else \
            {k: v["accuracy"] for k, v in results[method].items()}
        curves = {k: v for k, v in acc.items() if k != FINAL_FEATURE}
        title = f"{str(results['knn']['k']) + '-NN' if method == 'knn' else 'linear probe'} per block: {model}"
        label = f"{'k-NN' if method == 'knn' else 'linear probe'} on final pooled features"
        plot_per_block(curves, out / f"{method}.png", title, reference={label: acc[FINAL_FEATURE][0]})
