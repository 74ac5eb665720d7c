"""The one-pass analysis engine behind ``vitscope analyze``.

images ──► DataLoader ──► model (eval, autocast) ──► taps ──► metric accumulators
                                                               └─ compute() once ─► results.json

One forward pass feeds every selected metric; only the taps they need are hooked, and
each metric reduces its tensors inside the hook, layer by layer. :func:`analyze_model` is the
whole of ``vitscope analyze`` but the files: model and images in, the results dict out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from vitscope.data import SkipLog, iterate, make_loader, subset
from vitscope.data.sources import DataSource, describe_data, open_data
from vitscope.data.transforms import model_data_config, model_transform
from vitscope.errors import VitscopeError
from vitscope.metrics.attention import AttentionStats
from vitscope.metrics.base import StreamingMetric
from vitscope.metrics.fourier import FourierStats
from vitscope.metrics.norms import OUTLIER_RULE, NormStats
from vitscope.metrics.similarity import SimilarityStats
from vitscope.metrics.spectrum import IMAGE_RANK_RULE, SpectrumStats
from vitscope.models.finite import check_finite_activations
from vitscope.models.loader import spec_of
from vitscope.results import versions
from vitscope.runtime import autocast, distributed, shard
from vitscope.taps import TapError, Taps, ViTInfo, needed_taps, vit_info

log = logging.getLogger("vitscope")

METRICS: dict[str, type[StreamingMetric]] = {
    m.name: m for m in (AttentionStats, SimilarityStats, SpectrumStats, FourierStats, NormStats)
}


def build_metrics(
    names: Iterable[str], model: nn.Module, device: torch.device, compile: bool = False
) -> list[StreamingMetric]:
    """Instantiate the named metrics for ``model``'s token layout; ``compile``: torch.compile
    the reductions of those that offer it (``StreamingMetric.compilable``)."""
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise VitscopeError(f"unknown metrics {unknown}. Valid options are: {list(METRICS)}")
    info = model_info(model)
    try:
        return [METRICS[n](info, device, **({"compile": True} if compile and METRICS[n].compilable else {}))
                for n in names]
    except ValueError as e:
        raise VitscopeError(str(e)) from e


def model_info(model: nn.Module) -> ViTInfo:
    """:func:`vitscope.taps.vit_info`, with a model vitscope cannot analyse (no token-to-token
    attention, no patch grid) refused in one line (:class:`VitscopeError`)."""
    try:
        return vit_info(model)
    except TapError as e:
        raise VitscopeError(str(e)) from e


def run_metrics(
    model: nn.Module,
    loader: Iterable[Any],
    metrics: Sequence[StreamingMetric],
    *,
    device: torch.device,
    precision: str = "fp32",
    progress: bool = True,
    skips: SkipLog | None = None,
) -> dict[str, Any]:
    """Stream ``loader`` through ``model`` once, feeding every metric; return their results.

    Returns ``{"metrics": {name: result}, "images": n, "skipped": [...], "seconds": t}``.
    """
    skips = skips if skips is not None else SkipLog()
    model = model.to(device).eval()
    by_tap: dict[str, list[StreamingMetric]] = {}
    for m in metrics:
        for t in m.taps:
            by_tap.setdefault(t, []).append(m)

    def dispatch(layer: int, tap: str, x: torch.Tensor) -> None:
        for m in by_tap[tap]:
            m.update(layer, tap, x)

    expected = getattr(loader, "num_images", None)
    if expected is not None:
        for m in metrics:
            m.expect_images(expected)
    n, t0 = 0, time.perf_counter()
    bar = tqdm(total=expected, unit="img", disable=not progress,
               desc="analyze", dynamic_ncols=True)
    info = model_info(model)
    layers = range(info.depth + info.class_attention_depth)  # class-attention blocks offer attention only
    try:
        with Taps(model, needed_taps(metrics), dispatch, layers) as taps, torch.inference_mode():
            for batch in iterate(loader, skips):
                images = batch.images.to(device, non_blocking=True)
                with autocast(device, precision):
                    features = model.forward_features(images)
                    check_finite_activations(model, features, lambda: model.forward_features(images))
                taps.check()
                n += len(images)
                bar.update(len(images))
                bar.set_postfix(skipped=skips.count)
    except TapError as e:  # a block computes its attention where no hook sees it
        raise VitscopeError(str(e)) from e
    finally:
        bar.close()
    skipped = list(skips.messages)
    if distributed():  # every rank reaches here, so the collectives cannot hang
        count = torch.tensor([n], dtype=torch.long, device=device)
        dist.all_reduce(count)
        n = int(count.item())
        gathered: list[list[str]] = [[] for _ in range(dist.get_world_size())]
        dist.all_gather_object(gathered, skipped)
        skipped = [msg for part in gathered for msg in part]
    if n == 0:
        raise VitscopeError(f"no readable images ({len(skipped)} skipped)")
    for m in metrics:
        m.sync()
    return {
        "metrics": {m.name: m.compute() for m in metrics},
        "images": n,
        "skipped": skipped,
        "seconds": time.perf_counter() - t0,
    }


def model_summary(model: nn.Module) -> dict[str, Any]:
    """Spec, class and token layout of a model, for the results file."""
    return {"spec": spec_of(model), "class": type(model).__name__, **asdict(model_info(model))}


DEFAULT_METRICS = ("attention", "similarity", "spectrum", "fourier")

CONVENTIONS = {
    "prefix_tokens": "dropped; attention rows renormalised over patch tokens",
    "nmi_query_prior": "uniform, p(q) = 1/N",
    "distance": "pixels between patch centres (patch size x grid distance)",
    "depth_index": "attention/similarity/norms: block i; spectrum/fourier: 0 = embedding, i = after block i",
    "checkpoints": "loaded strictly",
    "image_spectrum_rank": IMAGE_RANK_RULE,
    "norm_outliers": OUTLIER_RULE,
}


def analyze_model(
    model: nn.Module, data: DataSource, *, images: int | None = None, batch_size: int = 64,
    device: torch.device, precision: str = "fp32", metrics: Sequence[str] = DEFAULT_METRICS, seed: int = 0,
    workers: int | None = None, progress: bool = True, decoder: bool = False, compile: bool = False,
    rank: int = 0, world: int = 1,
) -> dict[str, Any]:
    """Every metric of ``metrics`` for ``model`` over ``data`` (a seeded subset of ``images``), one
    pass: the content of an analysis ``results.json``.

    Under ``torchrun`` process ``rank`` of ``world`` analyses a disjoint shard and the accumulators are
    summed. ``decoder``: an MAE pretraining checkpoint's decoder is analysed too (mask ratio 0, a
    second pass), its metrics under ``metrics["decoder"]`` (Park et al. Fig. 10); the model must have
    been loaded from that checkpoint. ``compile``: torch.compile the attention and similarity reductions.
    """
    accumulators = build_metrics(metrics, model, device, compile)
    if decoder:
        from vitscope.models.mae_decoder import load_mae_decoder

        spec = getattr(model, "vitscope_spec", None)
        if spec is None:
            raise VitscopeError("the decoder needs the model as an MAE checkpoint path, not a model in memory")
        dec, layout = load_mae_decoder(spec, model)
        dec_accumulators = build_metrics(metrics, dec, device, compile)
    ds = shard(subset(open_data(data, model_transform(model)), images, seed), rank, world)
    loader = make_loader(ds, batch_size, workers=workers, pin=device.type == "cuda")
    loader.num_images = len(ds)  # type: ignore[attr-defined,arg-type]
    res = run_metrics(model, loader, accumulators, device=device, precision=precision, progress=progress and rank == 0)
    if decoder:
        dec_res = run_metrics(dec, loader, dec_accumulators, device=device, precision=precision,
                              progress=progress and rank == 0)
        res["metrics"]["decoder"] = dec_res["metrics"]
        res["seconds"] += dec_res["seconds"]
    if res["skipped"]:
        log.warning("%d unreadable images skipped (names in results.json 'skipped')", len(res["skipped"]))
    preprocessing = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model_data_config(model).items()}
    results = {
        "kind": "vitscope-analysis",
        "model": model_summary(model),
        "data": {"spec": describe_data(data), "requested_images": images, "images": res["images"],
                 "skipped": res["skipped"], "preprocessing": preprocessing},
        "seed": seed, "device": str(device), "processes": world, "precision": precision, "compiled": compile,
        "seconds": res["seconds"], "images_per_second": res["images"] / max(res["seconds"], 1e-9),
        "versions": versions(),
        "conventions": dict(CONVENTIONS),
        "metrics": res["metrics"],
    }
    if decoder:
        results["decoder"] = {**dec.summary(), "layout": layout, "metrics_key": "metrics.decoder",
                              "depth_index": "decoder block i (spectrum/fourier: 0 = decoder input)"}
    return results
