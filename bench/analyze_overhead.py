"""Cost of ``vitscope analyze`` (every metric on) against plain inference, in one run.

    python bench/analyze_overhead.py                      # GPU: ViT-B/16, 224 px, batch 128, bf16
    python bench/analyze_overhead.py --device cpu --model vit_tiny_patch16_224 --batch-size 32 --precision fp32

Images are random tensors already on the device, so the figures measure the model and
the metrics, not JPEG decoding. Prints ms per image for the plain forward pass
(``forward_features``, fused attention, autocast) and for the analysis, each line one
``run_metrics`` call per batch (taps installed and ``compute()`` run every iteration: an
upper bound; ``compute()`` alone is timed on its own line, its share of every analyze
line, which a real run pays once):

* **run of 50,000 / 10,000 images** (ImageNet val, CIFAR-10 test): the metrics live across
  the iterations and the spectrum is told the run's size, so its 512 per-image token
  spectra fall on evenly spaced images (1 in 98, 1 in 20) as in ``vitscope analyze``;
* **run of ≤ 512 images**: every image gets token spectra (a short run): the worst case;
* the same with ``--compile`` (torch.compile of the PyTorch reductions; the compile time
  is printed apart), and each metric alone (``--per-metric``).

The variants alternate within every iteration; each analysis pass is divided by the plain
pass of the same iteration and the median of these ratios is reported ("x plain"), with
their spread (25th–75th percentile) and the ratio of the best times (the least disturbed
pass of each), so a shared machine's load affects them alike and shows; ms/img are
medians. On a GPU it also prints the peak
``torch.cuda.max_memory_allocated`` of each variant and its ratio to plain inference.
``--numpy-reference`` adds the official notebooks' approach (attention distance, NMI and
Fourier with numpy on the CPU, per batch) for comparison.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import timm
import torch

from vitscope.allocator import retain_freed_memory
from vitscope.analysis import METRICS, build_metrics, run_metrics
from vitscope.data.images import Batch
from vitscope.runtime import autocast, resolve_device
from vitscope.taps import Taps, vit_info


RUNS = {"analyze, all metrics, run of 50,000": 50_000, "analyze, all metrics, run of 10,000": 10_000}
SHORT = "analyze, all metrics, run of ≤ 512"
COMPILED = "  run of 10,000, --compile"
COMPUTE = "  of which compute(), ÷ batch"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain(model, x, device, precision):
    with torch.inference_mode(), autocast(device, precision):
        model.forward_features(x)


def analysed(model, x, device, precision, metrics):
    """One ``run_metrics`` call on one batch: installs the taps, streams, computes (an upper bound)."""
    loader = [Batch(x, torch.zeros(len(x), dtype=torch.long), torch.arange(len(x)), [])]
    run_metrics(model, loader, metrics, device=device, precision=precision, progress=False)


def interleaved(variants, x, device, iters):
    """Median seconds per image of each variant, variants alternated within every iteration.

    Alternating (plain, analyze, plain, ...) lets a shared machine's load hit every
    variant alike. Returns the median times; the median, 25th and 75th percentiles of each
    variant's ratio to the plain pass of the same iteration, and the ratio of its best time
    to the plain pass's best; on a GPU the peak of ``torch.cuda.max_memory_allocated``; and
    the seconds of each variant's warm-up call (where ``--compile`` compiles).
    """
    times: dict[str, list[float]] = {k: [] for k in variants}
    peaks: dict[str, int] = {}
    warmup: dict[str, float] = {}
    for k, f in variants.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t = time.perf_counter()
        f()
        sync(device)
        warmup[k] = time.perf_counter() - t
        if device.type == "cuda":
            peaks[k] = torch.cuda.max_memory_allocated(device)
    for _ in range(iters):
        for k, f in variants.items():
            sync(device)
            t = time.perf_counter()
            f()
            sync(device)
            times[k].append((time.perf_counter() - t) / len(x))
    base = np.asarray(times[next(iter(variants))])
    ratios = {k: (*np.percentile(np.asarray(v) / base, (50, 25, 75)), min(v) / base.min()) for k, v in times.items()}
    return {k: float(np.median(v)) for k, v in times.items()}, ratios, peaks, warmup


def numpy_reference(model, x, device, precision):
    """Attention distance, NMI and Fourier per batch with numpy on the CPU (the notebooks' way)."""
    info = vit_info(model)
    p = info.num_prefix_tokens
    gh, gw = info.grid_size
    ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    pos = np.stack([ys.ravel(), xs.ravel()], -1) * info.patch_size[0]
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)

    def on_tap(layer, tap, t):
        a = t.float().cpu().numpy()
        if tap == "attn":
            a = a[..., p:, p:]
            a = a / a.sum(-1, keepdims=True)
            (a * dist).sum(-1).mean(-1)
            pk = a.mean(-2)
            hk = -(pk * np.log(pk + 1e-12)).sum(-1)
            hkq = -(a * np.log(a + 1e-12)).sum(-1).mean(-1)
            (hk - hkq) / np.sqrt(np.log(a.shape[-1]) * hk)
        else:
            maps = a[:, p:].transpose(0, 2, 1).reshape(len(a), -1, gh, gw)
            np.log(np.abs(np.fft.fft2(maps)) + 1e-6).mean((0, 1))

    with Taps(model, {"attn", "block_out"}, on_tap) as taps, torch.inference_mode(), autocast(device, precision):
        model.forward_features(x)
        taps.check()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vit_base_patch16_224")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per variant (interleaved)")
    ap.add_argument("--per-metric", nargs="?", const=",".join(METRICS), default="", metavar="NAMES",
                    help="also time each metric alone (all, or the comma-separated NAMES)")
    ap.add_argument("--numpy-reference", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="leave out the --compile variants")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's malloc thresholds as they are (the vitscope CLI raises them)")
    args = ap.parse_args()
    retained = False if args.default_malloc else retain_freed_memory()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False).to(device).eval()
    size = model.pretrained_cfg["input_size"][1:]
    x = torch.randn(args.batch_size, 3, *size, device=device)
    all_names = list(METRICS)

    def run_of(n, names=all_names, compile=False):  # metrics that live across iterations, told the run's size
        metrics = build_metrics(names, model, device, compile)
        for m in metrics:
            m.expect_images(n)
        return lambda: analysed(model, x, device, args.precision, metrics)

    logging.getLogger("vitscope.metrics.spectrum").setLevel(logging.ERROR)  # one batch < width: expected
    fed = build_metrics(all_names, model, device)
    analysed(model, x, device, args.precision, fed)

    variants = {"plain forward": lambda: plain(model, x, device, args.precision)}
    variants.update({label: run_of(n) for label, n in RUNS.items()})
    variants[SHORT] = lambda: analysed(model, x, device, args.precision, build_metrics(all_names, model, device))
    if not args.no_compile:
        variants[COMPILED] = run_of(10_000, compile=True)
    variants[COMPUTE] = lambda: [m.compute() for m in fed]  # ÷ batch: its share of every analyze line
    for n in filter(None, args.per_metric.split(",")):
        variants[f"analyze, {n} only"] = run_of(10_000, [n])
        if METRICS[n].compilable and not args.no_compile:
            variants[f"analyze, {n} only, --compile"] = run_of(10_000, [n], compile=True)
    if args.numpy_reference:
        variants["numpy per batch (notebooks)"] = lambda: numpy_reference(model, x, device, args.precision)
    times, ratios, peaks, warmup = interleaved(variants, x, device, args.iters)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{args.model}, batch {args.batch_size}, {args.precision}, {name}, {args.iters} interleaved iterations "
          f"(medians), malloc: {'freed blocks retained' if retained else 'default'}")
    print(f"{'':38s} {'ms/img':>9s} {'img/s':>9s} {'x plain':>8s} {'(25-75 %)':>13s} {'best/best':>9s}"
          + (f" {'peak GiB':>9s} {'x plain':>8s}" if peaks else ""))
    for label, t in times.items():
        mem = f" {peaks[label] / 2**30:9.2f} {peaks[label] / peaks['plain forward']:8.2f}" if peaks else ""
        ratio, lo, hi, best = ratios[label]
        print(f"{label:38s} {t * 1e3:9.3f} {1 / t:9.1f} {ratio:8.2f} {f'{lo:.2f}-{hi:.2f}':>13s} {best:9.2f}{mem}")
    compiled = [k for k in times if "--compile" in k]
    if compiled:
        extra = max(warmup[k] for k in compiled) - warmup[next(iter(RUNS))]
        print(f"--compile: first call {extra:.1f} s slower than eager (compiling; cached on disk afterwards)")


if __name__ == "__main__":
    main()
