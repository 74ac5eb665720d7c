"""Cost of ``vitscope analyze`` (every metric on) against plain inference, in one run.

    python bench/analyze_overhead.py                      # GPU: ViT-B/16, 224 px, batch 128, bf16
    python bench/analyze_overhead.py --device cpu --model vit_tiny_patch16_224 --batch-size 32 --precision fp32

Images are random tensors already on the device, so the figures measure the model and
the metrics, not JPEG decoding. Prints ms per image for the plain forward pass
(``forward_features``, fused attention, autocast), for the full analysis, for each
metric alone, and the ratios to plain inference. ``--numpy-reference`` adds the
official notebooks' approach (attention distance, NMI and Fourier with numpy on the CPU,
per batch) for comparison.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import timm
import torch

from vitscope.analysis import METRICS, build_metrics, run_metrics
from vitscope.runtime import autocast, resolve_device
from vitscope.capture import Taps, vit_info
from vitscope.data.images import Batch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain(model, x, device, precision, iters):
    with torch.inference_mode(), autocast(device, precision):
        model.forward_features(x)  # warm-up
        sync(device)
        t = time.perf_counter()
        for _ in range(iters):
            model.forward_features(x)
        sync(device)
    return (time.perf_counter() - t) / (iters * len(x))


def analysed(model, x, device, precision, iters, names):
    loader = [Batch(x, torch.zeros(len(x), dtype=torch.long), torch.arange(len(x)), [])]
    run_metrics(model, loader, build_metrics(names, model, device), device=device, precision=precision,
                progress=False)
    sync(device)
    t = time.perf_counter()
    run_metrics(model, loader * iters, build_metrics(names, model, device), device=device,
                precision=precision, progress=False)
    sync(device)
    return (time.perf_counter() - t) / (iters * len(x))


def numpy_reference(model, x, device, precision, iters):
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
        t = time.perf_counter()
        for _ in range(iters):
            model.forward_features(x)
            taps.check()
        sync(device)
    return (time.perf_counter() - t) / (iters * len(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vit_base_patch16_224")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--per-metric", action="store_true", help="also time each metric alone")
    ap.add_argument("--numpy-reference", action="store_true")
    args = ap.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False).to(device).eval()
    size = model.pretrained_cfg["input_size"][1:]
    x = torch.randn(args.batch_size, 3, *size, device=device)
    all_names = list(METRICS)

    base = plain(model, x, device, args.precision, args.iters)
    rows = [("plain forward", base)]
    rows.append(("analyze, all metrics", analysed(model, x, device, args.precision, args.iters, all_names)))
    if args.per_metric:
        rows += [(f"analyze, {n} only", analysed(model, x, device, args.precision, args.iters, [n]))
                 for n in all_names]
    if args.numpy_reference:
        rows.append(("numpy per batch (notebooks)", numpy_reference(model, x, device, args.precision, args.iters)))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{args.model}, batch {args.batch_size}, {args.precision}, {name}, {args.iters} iterations")
    print(f"{'':32s} {'ms/img':>9s} {'img/s':>9s} {'x plain':>8s}")
    for label, t in rows:
        print(f"{label:32s} {t * 1e3:9.3f} {1 / t:9.1f} {t / base:8.2f}")


if __name__ == "__main__":
    main()
