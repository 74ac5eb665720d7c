"""12 × 12 block-output CKA of two ViT-Ti models: vitscope against the PyPI peers torch-cka and ckatorch.

Every tool runs in its own fresh process (so peak memory is its own) on the same images,
batches and models; the script prints, per number of images: wall time, process CPU
time, the time over the bare forward passes of the two models (CPU time on CPU: wall
time on a shared machine is too noisy to subtract), peak memory (RSS on CPU, allocated
on GPU), and the largest difference of each peer's matrix from vitscope's. First it
runs a known-answer check: synthetic features with a float64 reference CKA through
each tool's public API. Peers are benchmark-only: install them into a separate
venv that also sees vitscope's environment, e.g.::

    python3 -m venv /tmp/benchvenv
    echo /tmp/venv/lib/python3.11/site-packages > /tmp/benchvenv/lib/python3.11/site-packages/main.pth
    /tmp/benchvenv/bin/pip install --no-deps torch-cka ckatorch && /tmp/benchvenv/bin/pip install seaborn pyyaml
    tar xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp/cifar10 --wildcards '*test/*'
    PYTHONPATH=src /tmp/benchvenv/bin/python bench/cka_vs_peers.py --data /tmp/cifar10/test --images 1000 2000

Tools:
``forward``       the two models' forward passes alone (the floor every tool pays)
``vitscope``      Taps + GramCollector + MinibatchCKA on the same loader as the peers
``vitscope-cli``  the whole ``vitscope compare`` pipeline (``run_compare``): its own JPEG loader
                  and transforms, results.json and heatmaps, plus top-k agreement of the heads
``torch-cka``     ``torch_cka.CKA(...).compare(loader)`` (0.21)
``ckatorch``      ``ckatorch.CKA(...)(loader, epochs=1)`` (1.0.3; its default is 10 epochs)

Models: random-weight ``vit_tiny_patch4_32`` (ViT-Ti/4, 32 px, 65 tokens), seeds 0 and 1;
features: block outputs, all tokens flattened (what torch-cka does with ``[B, T, D]``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

TOOLS = ("forward", "vitscope", "vitscope-cli", "torch-cka", "ckatorch")


# -- worker: one tool, one process --------------------------------------------------------------
def _models(device):
    import timm
    import torch

    import vitscope.models  # noqa: F401  (registers vit_tiny_patch4_32)

    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        out.append(timm.create_model("vit_tiny_patch4_32").eval().to(device))
    return out


def _loader(data: str, n: int, batch_size: int, model):
    import torch

    from vitscope.comparison.run import sample_images
    from vitscope.data.images import ImageFolder
    from vitscope.data.transforms import model_transform

    ds = sample_images(ImageFolder(Path(data), model_transform(model)), n, 0)  # what vitscope compare reads

    def collate(items):
        return torch.stack([it[0] for it in items]), torch.tensor([it[1] for it in items])

    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate)


def _peak_bytes(device) -> int:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def worker(tool: str, data: str, n: int, batch_size: int, device_name: str, out_dir: str, threads: int) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)

    device = torch.device(device_name)
    layers = [f"blocks.{i}" for i in range(12)]
    a, b = _models(device)
    loader = _loader(data, n, batch_size, a)
    matrix = None
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start, cpu_start = time.perf_counter(), time.process_time()
    if tool == "forward":
        with torch.no_grad():
            for x, _ in loader:
                x = x.to(device)
                a(x), b(x)
    elif tool == "vitscope":
        from vitscope.comparison.grams import GramCollector
        from vitscope.metrics.cka import MinibatchCKA
        from vitscope.taps import Taps

        ca, cb = (GramCollector(12, ["block"], "flatten", 1) for _ in range(2))
        acc = MinibatchCKA(12, 12, device=device)
        with Taps(a, ca.taps, ca), Taps(b, cb.taps, cb), torch.no_grad():
            for x, _ in loader:
                x = x.to(device)
                a(x), b(x)
                acc.update_grams(ca.take()["block"], cb.take()["block"])
        matrix = acc.compute()
    elif tool == "vitscope-cli":
        from vitscope.comparison import CompareConfig, run_compare

        res = run_compare(CompareConfig(
            models=["random:vit_tiny_patch4_32", "random:vit_tiny_patch4_32"], data=data, out=Path(out_dir),
            images=n, batch_size=batch_size, device=device_name, layer_types=("block",), workers=0, seed=0))
        matrix = torch.tensor(res["cka"]["block"])
    elif tool == "torch-cka":
        from torch_cka import CKA

        cka = CKA(a, b, model1_name="A", model2_name="B", model1_layers=layers, model2_layers=layers,
                  device=device_name)
        cka.compare(loader)
        matrix = cka.export()["CKA"]
    elif tool == "ckatorch":
        from ckatorch import CKA

        cka = CKA(a, b, layers=layers, first_name="A", second_name="B", device=device_name)
        matrix = cka(loader, epochs=1, f_extract=lambda batch: {"x": batch[0]}, f_args={})
    else:
        raise ValueError(f"unknown tool '{tool}'. Valid options are: {list(TOOLS)}")
    sync()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {"tool": tool, "images": n, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_bytes": _peak_bytes(device),
            "matrix": None if matrix is None else torch.as_tensor(matrix).double().cpu().tolist()}


# -- driver ---------------------------------------------------------------------------------------
def run_tool(tool: str, args: argparse.Namespace, n: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", tool, "--data", args.data, "--images", str(n),
           "--batch-size", str(args.batch_size), "--device", args.device, "--out", args.out, "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"tool": tool, "images": n, "error": err}
    return json.loads(lines[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="image folder (CIFAR-10 test split extracted from ../shared/data)")
    p.add_argument("--images", type=int, nargs="+", default=[1000, 2000])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    p.add_argument("--out", default="/tmp/vitscope-bench-compare", help="where vitscope-cli writes its results")
    p.add_argument("--json", default=None, help="also write every measurement here")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per tool (0: torch's default)")
    p.add_argument("--known-answer", action="store_true",
                   help="only the synthetic known-answer check and the CKA-only timing")
    p.add_argument("--cka-only-images", type=int, default=1024, help="images for the CKA-only timing")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.images[0], args.batch_size, args.device, args.out,
                                args.threads)))
        return
    known_answer(args.device)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cka_only(args.device, args.cka_only_images, args.batch_size)
    if args.known_answer:
        return

    import numpy as np

    rows = []
    for n in args.images:
        results = {t: run_tool(t, args, n) for t in args.tools}
        ref = np.array(results["vitscope"]["matrix"]) if results.get("vitscope", {}).get("matrix") else None
        floor = results.get("forward", {}).get("cpu_seconds" if args.device == "cpu" else "seconds")
        for t, r in results.items():
            if "error" in r:
                print(f"{n:>6} {t:<13} FAILED: {r['error']}")
                rows.append(r)
                continue
            spent = r["cpu_seconds"] if args.device == "cpu" else r["seconds"]
            over = spent - floor if floor is not None and t != "forward" else None
            diff = None
            if ref is not None and r["matrix"] is not None:
                m = np.array(r["matrix"])
                diff = float(np.nanmax(np.abs(m - ref))) if not np.isnan(m).all() else float("nan")
            r.update(overhead_seconds=over, max_abs_diff_vs_vitscope=diff)
            rows.append(r)
    print(f"\nViT-Ti/4 pair, 12 x 12 block CKA: device={args.device} batch={args.batch_size} "
          f"threads={args.threads or 'default'}")
    print("over fwd: CPU seconds (process time) beyond the forward-only run on CPU, wall seconds on GPU")
    print(f"{'images':>6} {'tool':<13} {'wall s':>8} {'img/s':>7} {'CPU s':>8} {'over fwd':>9} {'peak MiB':>9} "
          f"{'max|Δ| vs vitscope':>19}")
    for r in rows:
        if "error" in r:
            continue
        over = "" if r["overhead_seconds"] is None else f"{r['overhead_seconds']:.2f}"
        diff = "" if r["max_abs_diff_vs_vitscope"] is None else f"{r['max_abs_diff_vs_vitscope']:.2e}"
        print(f"{r['images']:>6} {r['tool']:<13} {r['seconds']:>8.2f} {r['images'] / r['seconds']:>7.1f} "
              f"{r['cpu_seconds']:>8.2f} {over:>9} {r['peak_bytes'] / 2**20:>9.1f} {diff:>19}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


# -- known answer: synthetic features through each tool's public API ------------------------------
class _Pick(__import__("torch").nn.Module):
    def __init__(self, part: int) -> None:
        super().__init__()
        self.part = part

    def forward(self, x):
        return x[:, self.part]


class _Toy(__import__("torch").nn.Module):
    """A "model" whose one layer ``blocks.0`` outputs one half of its input: features chosen by us."""

    def __init__(self, part: int) -> None:
        super().__init__()
        self.blocks = __import__("torch").nn.ModuleList([_Pick(part)])

    def forward(self, x):
        return self.blocks[0](x)


def known_answer(device_name: str, n: int = 1024, batch: int = 64) -> None:
    """CKA of two token-shaped feature sets ``[n, 8, 96]`` (768-d per image) with a known float64 value.

    The reference is the debiased HSIC summed over the same 64-image batches in float64
    (Kornblith's formula, written here). Cases: float32 features as they are, and with
    a shared offset of 10 or 100 (unit-scale features).
    """
    import numpy as np
    import torch

    from vitscope.metrics.cka import MinibatchCKA

    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, 8, generator=g, dtype=torch.float64)
    x = z @ torch.randn(8, 768, generator=g, dtype=torch.float64) + 7 * torch.randn(n, 768, generator=g, dtype=torch.float64)
    y = z @ torch.randn(8, 768, generator=g, dtype=torch.float64) + 7 * torch.randn(n, 768, generator=g, dtype=torch.float64)
    x, y = (x / x.std()).reshape(n, 8, 96), (y / y.std()).reshape(n, 8, 96)

    def debiased(a, b):
        a, b = a - a.mean(0), b - b.mean(0)
        m = len(a)
        ra, rb = (a * a).sum(1), (b * b).sum(1)

        def h(xty, r1, r2, n1, n2):
            return xty - m / (m - 2) * r1.dot(r2) + n1 * n2 / ((m - 1) * (m - 2))

        return np.array([h(np.linalg.norm(a.T @ b) ** 2, ra, rb, ra.sum(), rb.sum()),
                         h(np.linalg.norm(a.T @ a) ** 2, ra, ra, ra.sum(), ra.sum()),
                         h(np.linalg.norm(b.T @ b) ** 2, rb, rb, rb.sum(), rb.sum())])

    xf, yf = x.reshape(n, -1).numpy(), y.reshape(n, -1).numpy()
    t = sum(debiased(xf[i:i + batch], yf[i:i + batch]) for i in range(0, n, batch))
    reference = float(t[0] / np.sqrt(t[1] * t[2]))
    print(f"known answer: n={n}, batch={batch}, [n, 8, 96] float32 features, reference CKA {reference:.6f}")
    print(f"{'offset':>6} {'tool':<10} {'CKA':>10} {'|error|':>10}")
    for offset in (0.0, 10.0, 100.0):
        pair = torch.stack([x, y], 1).float() + offset  # [n, 2, 8, 96]
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(pair), batch_size=batch)
        values: dict[str, float | str] = {}
        acc = MinibatchCKA(1, 1, device=device_name)
        for (p,) in loader:
            p = p.to(device_name)
            acc.update([p[:, 0]], [p[:, 1]])
        values["vitscope"] = float(acc.compute()[0, 0])
        quiet = contextlib.redirect_stderr(io.StringIO())
        try:
            from torch_cka import CKA as TorchCKA

            c = TorchCKA(_Toy(0), _Toy(1), "A", "B", ["blocks.0"], ["blocks.0"], device=device_name)
            with quiet, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c.compare(loader)
            values["torch-cka"] = float(c.export()["CKA"][0, 0])
        except Exception as e:  # noqa: BLE001  (a peer's failure is a finding, not a crash)
            values["torch-cka"] = f"{type(e).__name__}: {str(e).splitlines()[0][:60]}"
        try:
            from ckatorch import CKA as CkaTorch

            c = CkaTorch(_Toy(0), _Toy(1), ["blocks.0"], first_name="A", second_name="B", device=device_name)
            with quiet, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values["ckatorch"] = float(c(loader, epochs=1, f_extract=lambda b: {"x": b[0]}, f_args={})[0, 0])
        except Exception as e:  # noqa: BLE001
            values["ckatorch"] = f"{type(e).__name__}: {str(e).splitlines()[0][:60]}"
        for tool, v in values.items():
            if isinstance(v, str):
                print(f"{offset:>6.0f} {tool:<10} {'failed':>10} {v}")
            else:
                print(f"{offset:>6.0f} {tool:<10} {v:>10.6f} {abs(v - reference):>10.2e}")


class _Emit(__import__("torch").nn.Module):
    def __init__(self, feats) -> None:
        super().__init__()
        self.feats = feats

    def forward(self, x):
        return self.feats[: len(x)]


class _Replay(__import__("torch").nn.Module):
    """A "model" whose blocks ``blocks.i`` output stored activations: the peers' API with no forward cost."""

    def __init__(self, feats) -> None:
        super().__init__()
        self.blocks = __import__("torch").nn.ModuleList([_Emit(f) for f in feats])

    def forward(self, x):
        for b in self.blocks:
            b(x)
        return x


def cka_only(device_name: str, n: int, batch: int) -> None:
    """Time of the CKA work alone at ViT-Ti/4 shapes: 12 layers × [batch, 65, 192] per model, n images.

    One batch of random activations is replayed for every batch (the work per batch is
    what counts); each tool runs through its public API, in this process, one after the
    other, fastest of two runs.
    """
    import torch

    from vitscope.metrics.cka import MinibatchCKA

    device = torch.device(device_name)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    fa = [torch.randn(batch, 65, 192, generator=g).to(device) for _ in range(12)]
    fb = [torch.randn(batch, 65, 192, generator=g).to(device) for _ in range(12)]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(n, 1)), batch_size=batch)
    layers = [f"blocks.{i}" for i in range(12)]

    def vitscope() -> None:
        acc = MinibatchCKA(12, 12, device=device)
        for (x,) in loader:
            acc.update([f[: len(x)] for f in fa], [f[: len(x)] for f in fb])
        acc.compute()

    def torch_cka() -> None:
        from torch_cka import CKA as TorchCKA

        c = TorchCKA(_Replay(fa), _Replay(fb), "A", "B", layers, layers, device=device_name)
        c.compare(loader)

    def ckatorch() -> None:
        from ckatorch import CKA as CkaTorch

        c = CkaTorch(_Replay(fa), _Replay(fb), layers, first_name="A", second_name="B", device=device_name)
        c(loader, epochs=1, f_extract=lambda b: {"x": b[0]}, f_args={})

    print(f"\nCKA work alone (activations replayed, 12 x 12 layers of [{batch}, 65, 192]), {n} images, {device}:")
    times = {}
    for name, fn in (("vitscope", vitscope), ("torch-cka", torch_cka), ("ckatorch", ckatorch)):
        best = float("inf")
        for _ in range(2):
            with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sync()
                t = time.perf_counter()
                fn()
                sync()
                best = min(best, time.perf_counter() - t)
        times[name] = best
    for name, t in times.items():
        print(f"  {name:<10} {t:8.2f} s  {n / t:9.1f} img/s  {t / times['vitscope']:6.1f} x vitscope's time")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
