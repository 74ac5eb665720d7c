"""One streaming pass of two models (or one) over the same images: CKA matrices and prediction agreement.

Both models see the same minibatches in lockstep, each through its own timm
preprocessing (:class:`~vitscope.comparison.paired.PairedTransform`). Per batch, every
layer's activations become Gram matrices in the tap callbacks
(:class:`~vitscope.comparison.grams.GramCollector`), the HSIC terms of all layer pairs are
added to one :class:`~vitscope.metrics.cka.MinibatchCKA` per layer type, and the class
scores to a :class:`~vitscope.metrics.agreement.PredictionAgreement`. Memory does not
grow with the number of images. :func:`run_compare` returns the results dict; the figures
are drawn from it (:func:`vitscope.comparison.plots.plot_compare`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Subset
from tqdm import tqdm

from vitscope.choices import LAYER_TYPES, TOKEN_REDUCTIONS
from vitscope.comparison.grams import GramCollector
from vitscope.comparison.paired import PairedTransform
from vitscope.data.images import SkipLog, iterate, make_loader, subset
from vitscope.data.sources import DataSource, describe_data, open_data
from vitscope.data.transforms import model_data_config, model_transform
from vitscope.errors import VitscopeError
from vitscope.metrics.agreement import PredictionAgreement
from vitscope.metrics.cka import MinibatchCKA
from vitscope.models import as_vit, spec_of
from vitscope.models.classifier import classifier
from vitscope.models.finite import check_finite_activations
from vitscope.results import COMPARE, versions
from vitscope.runtime import autocast, distributed, init_distributed, shard_batches
from vitscope.taps import Taps, TapError, ViTInfo, vit_info

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
RESULTS_FORMAT = COMPARE


@dataclass
class CompareConfig:
    """Everything a compare run depends on; saved in ``results.json`` (:meth:`record`).

    ``models``: specs or ViTs in memory; ``data``: any :data:`~vitscope.data.sources.DataSource`;
    ``out``: the folder the results are meant for (recorded only; nothing is written here).
    """

    models: list[str | nn.Module]
    data: DataSource
    out: Path | None = None
    images: int | None = 1024
    batch_size: int = 32
    device: str = "auto"
    precision: str = "fp32"
    token_reduction: str = "flatten"
    seed: int = 0
    probes: list[str] = field(default_factory=list)
    layer_types: tuple[str, ...] = tuple(LAYER_TYPES)
    ks: tuple[int, ...] = (5, 10, 100)
    workers: int | None = None
    progress: bool = True  # progress bar on stderr (the main process only)

    def record(self) -> dict[str, Any]:
        """The config as plain values: models by spec, data by spec or description."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "models": [spec_of(m) for m in self.models],
                "data": describe_data(self.data)}


def _validate(cfg: CompareConfig) -> None:
    if len(cfg.models) not in (1, 2):
        raise VitscopeError(f"compare takes one model (against itself) or two, got {len(cfg.models)}")
    if cfg.probes and len(cfg.probes) != len(cfg.models):
        raise VitscopeError(f"give one --probe per --model ({len(cfg.models)}), got {len(cfg.probes)}")
    if cfg.precision not in PRECISIONS:
        raise VitscopeError(f"unknown precision '{cfg.precision}'. Valid options are: {list(PRECISIONS)}")
    if cfg.token_reduction not in TOKEN_REDUCTIONS:
        raise VitscopeError(
            f"unknown token reduction '{cfg.token_reduction}'. Valid options are: {list(TOKEN_REDUCTIONS)}")
    unknown = set(cfg.layer_types) - set(LAYER_TYPES)
    if unknown or not cfg.layer_types:
        raise VitscopeError(f"unknown layer types {sorted(unknown)}. Valid options are: {list(LAYER_TYPES)}")
    if cfg.batch_size < 4:
        raise VitscopeError(f"batch size must be at least 4 (unbiased HSIC), got {cfg.batch_size}")


@dataclass
class _Side:
    """One model of the comparison and what runs it."""

    spec: str
    model: nn.Module
    info: ViTInfo
    collector: GramCollector
    forward: Any
    num_classes: int = 0
    class_names: list[str] | None = None
    probe: str | None = None


def _label_map(dataset_classes: list[str], names: list[str] | None, num_classes: int) -> tuple[torch.Tensor | None, str]:
    """Data set label → model class index (−1: not a model class), or None with the reason."""
    if names is not None and dataset_classes:
        index = {c: i for i, c in enumerate(names)}
        mapping = torch.tensor([index.get(c, -1) for c in dataset_classes])
        if bool((mapping < 0).all()):
            return None, "no data set class is a probe class"
        return mapping, "data set classes matched to probe classes by name"
    if dataset_classes:
        if len(dataset_classes) != num_classes:
            return None, (f"the data set has {len(dataset_classes)} classes and the heads {num_classes}: "
                          "correctness unknown")
        return torch.arange(num_classes), "data set classes taken in folder order as the head's classes"
    return torch.arange(num_classes), "labels taken as class indices"


def _setup_agreement(cfg: CompareConfig, sides: list[_Side], dataset_classes: list[str]
                     ) -> tuple[torch.Tensor | None, str, bool]:
    """Give each side a classifier when both have one; returns (label map, note, enabled)."""
    if len(sides) < 2:
        return None, "one model against itself: agreement is trivially perfect", False
    for side, probe in zip(sides, cfg.probes or [None] * len(sides)):
        side.probe = probe
        if probe is None and int(getattr(side.model, "num_classes", 0)) <= 0:
            return None, f"'{side.spec}' has no classifier head and no --probe", False
    for side in sides:
        clf, names = classifier(side.model, side.probe)
        side.forward = clf
        side.class_names = names
        side.num_classes = int(clf.probe.linear.out_features) if side.probe else int(side.model.num_classes)
    a, b = sides
    if a.num_classes != b.num_classes:
        if cfg.probes:
            raise VitscopeError(f"the probes predict {a.num_classes} and {b.num_classes} classes")
        for side in sides:
            side.forward = side.model.forward_features
        return None, f"the heads predict {a.num_classes} and {b.num_classes} classes", False
    if a.class_names is not None and b.class_names is not None and a.class_names != b.class_names:
        raise VitscopeError("the two probes were trained on different classes")
    mapping, note = _label_map(dataset_classes, a.class_names, a.num_classes)
    return mapping, note, True


def sample_images(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    """``n`` images drawn without replacement (all when ``n`` is None), in a seeded random order.

    Each minibatch must be a random sample of the data for the unbiased HSIC sums to
    estimate the data set's CKA; a class-sorted folder read in order would give
    batches of one class.
    """
    chosen = subset(dataset, n, seed)
    order = torch.randperm(len(chosen), generator=torch.Generator().manual_seed(seed))  # type: ignore[arg-type]
    return Subset(chosen, order.tolist())


def _model_record(side: _Side) -> dict[str, Any]:
    cfg = getattr(side.model, "pretrained_cfg", None) or {}
    return {"spec": side.spec, "architecture": cfg.get("architecture"), "probe": side.probe,
            "depth": side.info.depth, "embed_dim": side.info.embed_dim, "num_heads": side.info.num_heads,
            "num_prefix_tokens": side.info.num_prefix_tokens, "grid_size": list(side.info.grid_size),
            "patch_size": list(side.info.patch_size),
            "data_config": json.loads(json.dumps(model_data_config(side.model), default=str))}


def _stream(sides: list[_Side], paired: PairedTransform, loader: Any, device: torch.device, precision: str,
            cka: dict[str, MinibatchCKA], agreement: PredictionAgreement | None,
            label_map: torch.Tensor | None, progress: bool = True) -> tuple[int, int, SkipLog]:
    """The pass over the images: both models per batch, Grams into ``cka``, scores into ``agreement``.

    Returns the images seen, those left out of CKA (a last batch under 4), and the skipped files.
    """
    skips = SkipLog()
    seen = short = 0
    with contextlib.ExitStack() as stack:
        taps = [stack.enter_context(Taps(s.model, s.collector.taps, s.collector)) for s in sides]
        bar = stack.enter_context(tqdm(total=len(loader.dataset), unit="img", desc="compare", dynamic_ncols=True,
                                                disable=not progress))
        for batch in iterate(loader, skips):
            views = paired.split(batch.images)
            grams, scores = [], []
            for side, tap, x in zip(sides, taps, views):
                with torch.no_grad(), autocast(device, precision):
                    x = x.to(device, non_blocking=True)
                    out = side.forward(x)
                    check_finite_activations(side.model, out, lambda: side.forward(x))
                tap.check()
                grams.append(side.collector.take())
                scores.append(out)
            n = len(batch.images)
            if n >= 4:
                for t, acc in cka.items():
                    acc.update_grams(grams[0][t], grams[1][t] if len(sides) == 2 else None)
            else:
                short += n
                log.warning("last batch has %d images, fewer than the 4 unbiased HSIC needs: left out of CKA", n)
            if agreement is not None:
                labels = None
                if label_map is not None:
                    known = (batch.labels >= 0) & (batch.labels < len(label_map))
                    labels = torch.where(known, label_map[batch.labels.clamp(0, len(label_map) - 1)], -1)
                agreement.update(scores[0].float(), scores[1].float(), labels)
            seen += n
            bar.update(n)
    return seen, short, skips


def run_compare(cfg: CompareConfig) -> dict[str, Any]:
    """Run the comparison; return the content of its ``results.json`` (every process of a ``torchrun``
    launch returns it; the figures come from it)."""
    _validate(cfg)
    rank, world, device = init_distributed(cfg.device)
    models = [as_vit(m, seed=cfg.seed + i) for i, m in enumerate(cfg.models)]
    sides: list[_Side] = []
    for spec, model in zip([spec_of(m) for m in cfg.models], models):
        try:
            info = vit_info(model)
        except TapError as e:
            raise VitscopeError(f"'{spec}': {e}") from e
        collector = GramCollector(info.depth, cfg.layer_types, cfg.token_reduction, info.num_prefix_tokens)
        model.to(device)
        sides.append(_Side(spec, model, info, collector, model.forward_features))
    if cfg.token_reduction == "cls" and any(s.info.num_prefix_tokens < 1 for s in sides):
        raise VitscopeError("token reduction 'cls' asked of a model without a CLS token")

    paired = PairedTransform(
        [model_transform(m) for m in models],
        [json.dumps(model_data_config(m), sort_keys=True, default=str) for m in models],
    )
    dataset = open_data(cfg.data, paired)
    data = shard_batches(sample_images(dataset, cfg.images, cfg.seed), cfg.batch_size, rank, world)
    loader = make_loader(data, cfg.batch_size, workers=cfg.workers, pin=device.type == "cuda")
    label_map, agreement_note, with_agreement = _setup_agreement(cfg, sides, list(getattr(dataset, "classes", [])))
    for side in sides:
        side.forward = side.forward.to(device) if isinstance(side.forward, nn.Module) else side.forward

    depths = [s.info.depth for s in sides]
    cka = {t: MinibatchCKA(depths[0], depths[-1], device=device) for t in cfg.layer_types}
    agreement = PredictionAgreement(sides[0].num_classes, cfg.ks, device=device) if with_agreement else None
    start = time.perf_counter()
    seen, short, skips = _stream(sides, paired, loader, device, cfg.precision, cka, agreement, label_map,
                                 progress=rank == 0 and cfg.progress)
    seconds = time.perf_counter() - start
    skipped = list(skips.messages)
    if distributed():  # every rank gets here: the collectives cannot hang
        counts = torch.tensor([seen, short], dtype=torch.long, device=device)
        dist.all_reduce(counts)
        seen, short = (int(c) for c in counts.tolist())
        parts: list[list[str]] = [[] for _ in range(world)]
        dist.all_gather_object(parts, skipped)
        skipped = [m for part in parts for m in part]
    if seen - short == 0:
        raise VitscopeError(f"no readable images in '{describe_data(cfg.data)}' ({len(skipped)} skipped)")

    matrices = {t: acc.compute().cpu().tolist() for t, acc in cka.items()}
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "config": {**cfg.record(), "device": str(device)},
        "processes": world,
        "models": [_model_record(s) for s in sides],
        "self_comparison": len(sides) == 1,
        "data": {"spec": describe_data(cfg.data), "images_requested": cfg.images, "images_available": len(dataset),
                 "images": seen, "cka_images": seen - short,
                 "skipped": len(skipped), "skipped_examples": skipped[:20]},
        "seed": cfg.seed,
        "token_reduction": cfg.token_reduction,
        "estimator": "minibatch linear CKA, unbiased HSIC_1 summed over batches, ratio at the end "
                     "(Nguyen et al. 2021; Shekhar et al. App. A eq. 3-4), float64",
        "versions": versions(),
        "seconds": seconds,
        "layer_types": {t: {"taps": list(LAYER_TYPES[t])} for t in cfg.layer_types},
        "cka": matrices,
        "rows": sides[0].spec,
        "columns": sides[-1].spec,
        "agreement": agreement.compute() if agreement is not None else None,
        "agreement_note": agreement_note,
    }
    return results
