"""``vitscope robustness``: accuracy under frequency-band noise and cue-conflict shape bias.

One pass over the labelled images per model feeds the clean and every noisy accuracy (the
noise for batch ``b`` and frequency ``f`` comes from a generator seeded by ``(seed, b, f)``
on the model's device, so every model sees the same noise on the same images); one pass over
the cue-conflict stimuli gives the decision counts. :func:`run` returns the content of
``results.json`` with provenance; the plots are drawn from it (:mod:`vitscope.perturbation.plots`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from tqdm import tqdm

from vitscope.choices import NOISE_FREQUENCIES
from vitscope.data.images import SkipLog, iterate, make_loader, subset
from vitscope.data.sources import DataSource, describe_data, open_data
from vitscope.data.transforms import model_data_config, model_transform
from vitscope.errors import VitscopeError
from vitscope.models.classifier import classifier
from vitscope.models.finite import FiniteChecked
from vitscope.models.loader import as_vit, spec_of
from vitscope.perturbation.cue_conflict import CueConflictImages, conflicting
from vitscope.perturbation.noise import BAND_NORMS, NOISE_SCALES, add_pixel_noise, band_limited_noise, band_mask
from vitscope.results import ROBUSTNESS, provenance, to_plain
from vitscope.runtime import resolve_device
from vitscope.perturbation.shape_bias import (
    IMAGENET_NUM_CLASSES,
    CategoryMap,
    category_scores,
    check_map_categories,
    decision_counts,
    imagenet16_map,
    parse_class_map,
    resolve_class_map,
    shape_bias,
)

RESULTS_FORMAT = ROBUSTNESS


@dataclass
class RobustnessConfig:
    """Everything a run depends on; saved in ``results.json`` (:meth:`record`). ``models``: specs or
    ViTs in memory; ``data``: any :data:`~vitscope.data.sources.DataSource`; ``out``: recorded only."""

    models: list[str | nn.Module]
    out: str | None = None
    probes: list[str | None] = field(default_factory=list)
    data: DataSource | None = None
    cue_conflict: str | None = None
    images: int | None = None
    batch_size: int = 64
    device: str | None = None
    noise_strength: float = 0.1
    frequencies: list[float] = field(default_factory=lambda: list(NOISE_FREQUENCIES))
    band_width: float = 0.1
    band_norm: str = "max"
    noise_scale: str = "band"
    seed: int = 0
    class_map: list[str] = field(default_factory=list)
    workers: int | None = None
    progress: bool = True  # progress bars on stderr

    def record(self) -> dict[str, Any]:
        """The config as plain values: models by spec, data by spec or description."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "models": [spec_of(m) for m in self.models],
                "data": None if self.data is None else describe_data(self.data)}

    def check(self) -> None:
        """Raise :class:`VitscopeError` for any unusable setting."""
        if not self.models:
            raise VitscopeError("no --model given")
        if self.probes and len(self.probes) != len(self.models):
            raise VitscopeError(f"{len(self.probes)} --probe for {len(self.models)} --model: give one per model "
                                "(use 'none' for a model's own head)")
        if self.data is None and self.cue_conflict is None:
            raise VitscopeError("nothing to do: pass --data (frequency-noise accuracy) "
                                "and/or --cue-conflict (shape bias)")
        if self.batch_size <= 0:
            raise VitscopeError(f"batch size must be positive, got {self.batch_size}")
        if self.images is not None and self.images <= 0:
            raise VitscopeError(f"--images must be positive, got {self.images}")
        if self.noise_strength < 0 or not math.isfinite(self.noise_strength):
            raise VitscopeError(f"noise strength must be a finite number ≥ 0, got {self.noise_strength}")
        if not self.frequencies or any(not (0 <= f <= 1.5) for f in self.frequencies):
            raise VitscopeError(f"frequencies are in units of π within [0, 1.5], got {self.frequencies}")
        if not 0 < self.band_width <= 2:
            raise VitscopeError(f"band width is in units of π within (0, 2], got {self.band_width}")
        if self.band_norm not in BAND_NORMS:
            raise VitscopeError(f"unknown band norm '{self.band_norm}'. Valid options are: {list(BAND_NORMS)}")
        if self.noise_scale not in NOISE_SCALES:
            raise VitscopeError(f"unknown noise scale '{self.noise_scale}'. Valid options are: {list(NOISE_SCALES)}")


def noise_seed(seed: int, batch: int, freq: int) -> int:
    """A 63-bit seed for the noise of batch ``batch`` at frequency index ``freq``."""
    return int(np.random.SeedSequence([seed, batch, freq]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _classes_of(ds: Dataset) -> list[str]:
    return list(getattr(ds.dataset if isinstance(ds, Subset) else ds, "classes", []))


def _label_lut(data_classes: list[str], model_classes: list[str] | None, num_outputs: int,
               device: torch.device) -> torch.Tensor | None:
    """Data label index → classifier output index by class name, when both have names."""
    if not model_classes or not data_classes:
        return None
    missing = [c for c in data_classes if c not in model_classes]
    if missing:
        raise VitscopeError(f"data classes {missing} are not among the classifier's classes {model_classes}")
    return torch.tensor([model_classes.index(c) for c in data_classes], device=device)


@torch.no_grad()
def noise_accuracy(clf: nn.Module, ds: Dataset, std: Sequence[float], cfg: RobustnessConfig,
                   model_classes: list[str] | None, num_outputs: int, device: torch.device,
                   desc: str) -> dict[str, Any]:
    """Top-1 accuracy on clean images and with band noise at each frequency; drop = clean − noisy."""
    lut = _label_lut(_classes_of(ds), model_classes, num_outputs, device)
    std_t = torch.tensor(std, device=device, dtype=torch.float32)
    skips = SkipLog()
    n = 0
    clean = torch.zeros((), dtype=torch.long, device=device)
    noisy = torch.zeros(len(cfg.frequencies), dtype=torch.long, device=device)
    rms = torch.zeros(len(cfg.frequencies), dtype=torch.float64, device=device)
    masks: list[torch.Tensor] = []
    loader = make_loader(ds, cfg.batch_size, workers=cfg.workers, pin=device.type == "cuda")
    with tqdm(iterate(loader, skips), total=len(loader), desc=desc, unit="batch", disable=not cfg.progress) as bar:
        for b, batch in enumerate(bar):
            if bool((batch.labels < 0).any()):  # checked on the CPU copy: no device sync
                raise VitscopeError("frequency-noise accuracy needs labelled images; the data set has unlabelled ones")
            if lut is None and int(batch.labels.max()) >= num_outputs:
                raise VitscopeError(f"label {int(batch.labels.max())} out of range for a classifier with "
                                    f"{num_outputs} classes")
            x = batch.images.to(device, non_blocking=True)
            y = batch.labels.to(device)
            if lut is not None:
                y = lut[y]
            if not masks:
                h, w = x.shape[-2:]
                masks = [band_mask(h, w, f, cfg.band_width, cfg.band_norm, device) for f in cfg.frequencies]
                empty = [f for f, m in zip(cfg.frequencies, masks) if not bool(m.any())]
                if empty:
                    raise VitscopeError(f"bands centred at {empty}π of width {cfg.band_width}π hold no frequency of "
                                        f"{h}×{w} images; widen --band-width or choose other --frequencies")
            clean += (clf(x).argmax(1) == y).sum()
            for fi, mask in enumerate(masks):
                gen = torch.Generator(device=device).manual_seed(noise_seed(cfg.seed, b, fi))
                noise = band_limited_noise(tuple(x.shape), mask, cfg.noise_strength, cfg.noise_scale, gen)
                rms[fi] += noise.double().pow(2).mean((1, 2, 3)).sqrt().sum()
                noisy[fi] += (clf(add_pixel_noise(x, noise, std_t)).argmax(1) == y).sum()
            n += len(y)
    if n == 0:
        raise VitscopeError("no readable labelled image in --data")
    clean_acc = clean.item() / n
    acc = (noisy.double() / n).tolist()
    return {
        "images": n, "unreadable": skips.count,
        "clean_accuracy": clean_acc,
        "accuracy": acc,
        "drop": [clean_acc - a for a in acc],
        "noise_rms": (rms / n).tolist(),
    }


@torch.no_grad()
def shape_bias_eval(clf: nn.Module, stimuli_ds: CueConflictImages, cmap: CategoryMap, cfg: RobustnessConfig,
                    device: torch.device, desc: str) -> dict[str, Any]:
    """Decision counts on the conflicting stimuli the category map covers; shape bias pooled and per class."""
    sel = conflicting(stimuli_ds.stimuli, cmap.categories)
    if not sel.indices:
        raise VitscopeError(f"no cue-conflict image has both its shape and texture class among {list(cmap.categories)}")
    ds = subset(Subset(stimuli_ds, sel.indices), cfg.images, cfg.seed)
    cat_index = {c: i for i, c in enumerate(cmap.categories)}
    shape_of = torch.tensor([cat_index.get(s.shape, -1) for s in stimuli_ds.stimuli], device=device)
    texture_of = torch.tensor([cat_index.get(s.texture, -1) for s in stimuli_ds.stimuli], device=device)
    k = len(cmap.categories)
    counts = torch.zeros(k, 3, dtype=torch.long, device=device)
    skips = SkipLog()
    loader = make_loader(ds, cfg.batch_size, workers=cfg.workers, pin=device.type == "cuda")
    with tqdm(iterate(loader, skips), total=len(loader), desc=desc, unit="batch", disable=not cfg.progress) as bar:
        for batch in bar:
            probs = clf(batch.images.to(device, non_blocking=True)).float().softmax(1)
            decision = category_scores(probs, cmap.classes).argmax(1)
            idx = batch.index.to(device)
            counts += decision_counts(decision, shape_of[idx], texture_of[idx], k)
    counts = counts.cpu()
    n = int(counts.sum())
    if n == 0:
        raise VitscopeError("no readable cue-conflict image")
    per_class_bias = shape_bias(counts[:, 0], counts[:, 1])
    total = counts.sum(0)
    return {
        "images": {"files": len(stimuli_ds), "same_class_dropped": sel.same_class,
                   "outside_map_dropped": sel.outside_map,
                   "subsampled_out": len(sel.indices) - len(ds),  # type: ignore[arg-type]
                   "unreadable": skips.count, "evaluated": n},
        "category_map": cmap.to_json(),
        "shape_bias": float(shape_bias(total[:1], total[1:2])[0]),
        "shape_bias_class_mean": float(torch.nanmean(per_class_bias)),  # NaN if no class has a decision
        "fraction_shape": int(total[0]) / n,
        "fraction_texture": int(total[1]) / n,
        "per_class": {c: {"shape": int(counts[i, 0]), "texture": int(counts[i, 1]), "other": int(counts[i, 2]),
                          "shape_bias": float(per_class_bias[i])}
                      for i, c in enumerate(cmap.categories)},
    }


def _category_map(user_map: dict[str, list[str]] | None, stimulus_categories: list[str],
                  class_names: list[str] | None, num_outputs: int, spec: str) -> CategoryMap:
    if user_map:
        return resolve_class_map(user_map, stimulus_categories, class_names, num_outputs)
    if num_outputs == IMAGENET_NUM_CLASSES:
        return imagenet16_map()
    raise VitscopeError(f"model '{spec}' has {num_outputs} classes, not the 1000 ImageNet ones: pass --class-map "
                        "to map cue-conflict categories to its classes (e.g. --class-map airplane=airplane)")


def run(cfg: RobustnessConfig) -> dict[str, Any]:
    """Evaluate every model; return the content of ``results.json`` (plain JSON values)."""
    cfg.check()
    device = resolve_device(cfg.device)
    probes = cfg.probes or [None] * len(cfg.models)
    probes = [None if p in (None, "", "none") else p for p in probes]
    user_map = parse_class_map(cfg.class_map) if cfg.class_map else None
    stimuli_ds, stimulus_categories = None, []
    if cfg.cue_conflict is not None:
        stimuli_ds = CueConflictImages(cfg.cue_conflict)  # each model sets its own transform
        stimulus_categories = sorted({s.shape for s in stimuli_ds.stimuli} | {s.texture for s in stimuli_ds.stimuli})
        if user_map:  # fail before any model runs
            check_map_categories(user_map, stimulus_categories)
    results: dict[str, Any] = {"format": RESULTS_FORMAT, "provenance": provenance(config=cfg.record(), device=str(device)),
                               "models": []}
    for source, probe in zip(cfg.models, probes):
        model = as_vit(source, seed=cfg.seed)
        spec = spec_of(source)
        clf, class_names = classifier(model, probe)
        clf = FiniteChecked(clf, model).to(device).eval()
        num_outputs = len(class_names) if class_names else int(getattr(model, "num_classes", 0))
        transform = model_transform(model)
        entry: dict[str, Any] = {"spec": spec_of(model), "probe": probe,
                                 "num_classes": num_outputs, "class_names": class_names,
                                 "data_config": to_plain(model_data_config(model)), "seconds": {}}
        label = spec if probe is None else f"{spec} + {Path(probe).name}"
        cmap = None  # resolved before any image is run, so a bad map fails fast
        if stimuli_ds is not None:
            cmap = _category_map(user_map, stimulus_categories, class_names, num_outputs, spec)
        if cfg.data is not None:
            t0 = time.perf_counter()
            ds = subset(open_data(cfg.data, transform), cfg.images, cfg.seed)
            entry["noise"] = noise_accuracy(clf, ds, model_data_config(model)["std"], cfg, class_names,
                                            num_outputs, device, f"{label} noise")
            entry["seconds"]["noise"] = time.perf_counter() - t0
        if stimuli_ds is not None and cmap is not None:
            t0 = time.perf_counter()
            stimuli_ds.transform = transform
            entry["shape_bias"] = shape_bias_eval(clf, stimuli_ds, cmap, cfg, device, f"{label} cue-conflict")
            entry["seconds"]["shape_bias"] = time.perf_counter() - t0
        results["models"].append(entry)
        del model, clf
    if cfg.data is not None:
        results["noise"] = {"frequencies": list(cfg.frequencies), "band_width": cfg.band_width,
                            "band_norm": cfg.band_norm, "scale": cfg.noise_scale, "strength": cfg.noise_strength,
                            "units": "frequencies and band width in π; strength in pixel units (images in [0, 1])"}
    return to_plain(results)
