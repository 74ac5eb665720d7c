"""Where does the zoo's high frequency come from? Park et al. Fig. 9 block by block (issue 18).

    python scripts/fig9_origin.py /path/to/cifar10/test [--old-zoo DIR] [--out docs/figures/zoo-fig9-origin.png]

Analyses (Fourier, attention, similarity) 500 seeded CIFAR-10 test images through every zoo model,
a random ViT with MoCo v3's initialisation (frozen Xavier patch projection, sin-cos positions: the
state MoCo and the hybrid start from) and, with ``--old-zoo``, a previous zoo folder (its
``manifest.json`` and weights); prints ΔlogAmplitude at the highest frequency (π) per depth
(0 = the patch embedding) with the attention entropy per block, writes them as JSON next to the
figure, and draws ΔlogAmplitude at π against depth (the quantity of Park Fig. 9, right panel).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402

import vitscope.models  # noqa: E402,F401
from vitscope.analysis import build_metrics, run_metrics  # noqa: E402
from vitscope.data import make_loader, model_transform, open_dataset, subset  # noqa: E402
from vitscope.models import load  # noqa: E402
from vitscope.models.zoo import manifest, zoo_dir  # noqa: E402
from vitscope.train.encoder import ViTEncoder, xavier_patch_embed  # noqa: E402


def moco_init(arch_kwargs: dict) -> torch.nn.Module:
    """A random ViT as MoCo v3 starts: frozen Xavier patch projection, fixed sin-cos positions."""
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch4_32", **arch_kwargs)
    xavier_patch_embed(vit)
    ViTEncoder(vit, sincos_pos=True, frozen_patch_embed=True)
    return vit.eval()


def measure(model: torch.nn.Module, data: str, images: int) -> dict[str, list[float]]:
    metrics = build_metrics(["fourier", "attention", "similarity"], model, torch.device("cpu"))
    ds = subset(open_dataset(data, model_transform(model)), images, 0)
    loader = make_loader(ds, 100, workers=0, pin=False)
    loader.num_images = len(ds)  # type: ignore[attr-defined]
    m = run_metrics(model, loader, metrics, device=torch.device("cpu"), progress=False)["metrics"]
    return {"hf": m["fourier"]["delta_log_amplitude_at_highest"], "entropy": m["attention"]["entropy"],
            "tokens_cosine": m["similarity"]["tokens_cosine"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--old-zoo", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/figures/zoo-fig9-origin.png"))
    args = ap.parse_args()
    zoo = manifest(zoo_dir())
    arch = next(iter(zoo.values()))["arch_kwargs"]
    models = {"random ViT, MoCo v3 init": lambda: moco_init(arch)}
    models.update({f"zoo {n}": (lambda n=n: load(f"zoo:{n}")) for n in zoo})
    if args.old_zoo:
        old = manifest(args.old_zoo)
        models.update({f"old zoo {n}": (lambda n=n: _load_from(args.old_zoo, n)) for n in old
                       if n in zoo and old[n]["sha256"] != zoo[n]["sha256"]})  # the models that changed
    res = {}
    for name, make in models.items():
        res[name] = measure(make(), args.data, args.images)
        print(f"{name:32s} HF " + " ".join(f"{v:6.2f}" for v in res[name]["hf"]) +
              "   entropy " + " ".join(f"{v:5.2f}" for v in res[name]["entropy"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    fig, ax = plt.subplots(figsize=(8.6, 4.2))
    bases = list(dict.fromkeys(name.split()[-1] for name in res))  # a model and its old version share a colour
    for name, r in res.items():
        style = ":" if name.startswith("random") else "--" if name.startswith("old") else "-"
        ax.plot(range(len(r["hf"])), r["hf"], style, marker="o", ms=3, label=name,
                color=f"C{bases.index(name.split()[-1])}")
    ax.set_xlabel("depth (0 = patch embedding, i = after block i)")
    ax.set_ylabel("ΔlogAmplitude at π")
    ax.set_title("Park et al. Fig. 9 (right) on the zoo: where high frequency comes from", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the curves, not on them
    fig.tight_layout()
    fig.savefig(args.out, dpi=130)
    print(f"figure: {args.out}")


def _load_from(folder: Path, name: str) -> torch.nn.Module:
    os.environ["VITSCOPE_ZOO"] = str(folder)
    try:
        return load(f"zoo:{name}")
    finally:
        del os.environ["VITSCOPE_ZOO"]


if __name__ == "__main__":
    main()
