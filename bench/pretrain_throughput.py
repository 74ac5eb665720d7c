"""Training throughput (images/s) of each pretraining objective, through the real training step.

Uses :class:`vitscope.train.engine.Trainer` (the step `vitscope pretrain` runs: device-side
augmentations, bf16 autocast on CUDA, fused AdamW, optional torch.compile, SDPA attention)
on a uint8 data set resident on the device (random pixels, CIFAR-10's shape by default).
No host sync inside the timed loop except one at its end.

GPU (the issue's setting: ViT-Ti/4, 32 px, batch 512, bf16, compile):

    python bench/pretrain_throughput.py --compile
    # targets on one H100: MoCo v3 >= 15,000 img/s, SimMIM >= 30,000 img/s

CPU smoke figures (tiny model):

    python bench/pretrain_throughput.py --device cpu --batch-size 64 --steps 5 \
        --moco-mlp-dim 512 --model-kwargs '{"depth": 4, "embed_dim": 64, "num_heads": 2}'
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from vitscope.train.config import METHODS, PretrainConfig, resolve
from vitscope.train.distributed import setup
from vitscope.train.engine import Trainer
from vitscope.train.gpu_data import DeviceImages


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(method: str, args: argparse.Namespace) -> dict[str, float]:
    cfg = resolve(PretrainConfig(method=method, model=args.model, batch_size=args.batch_size, epochs=1,
                                 compile=args.compile, device=args.device, precision=args.precision,
                                 model_kwargs=json.loads(args.model_kwargs), lam=0.5, grad_cos_every=10**9,
                                 tensorboard=False, moco_mlp_dim=args.moco_mlp_dim))
    d = setup(cfg.device)
    trainer = Trainer(cfg, d)
    side = int(trainer.encoder.img_size)
    pixels = np.random.default_rng(0).integers(0, 256, (args.images, side, side, 3), dtype=np.uint8)
    data = DeviceImages(pixels, d.device, batch_size=cfg.batch_size)
    batches = data.epoch(0)
    spe = data.steps_per_epoch
    for i in range(args.warmup):  # includes compilation
        trainer.step(next(batches), i, spe)
    sync(d.device)
    t0 = time.perf_counter()
    out = {}
    for i in range(args.steps):
        out, _ = trainer.step(next(batches), args.warmup + i, spe)
    loss = float(out["loss"])  # the one host sync
    seconds = time.perf_counter() - t0
    return {"img_per_s": args.steps * cfg.batch_size / seconds, "ms_per_step": 1000 * seconds / args.steps,
            "loss": loss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--model", default="vit_tiny_patch4_32")
    p.add_argument("--model-kwargs", default="{}", help="JSON kwargs for timm.create_model")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--moco-mlp-dim", type=int, default=4096, help="MoCo v3 head width (official: 4096)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    args = p.parse_args()
    args.images = args.batch_size * (args.steps + args.warmup)
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else \
        f"CPU ({torch.get_num_threads()} threads)"
    print(f"# {dev}, torch {torch.__version__}, model {args.model} {args.model_kwargs}, batch {args.batch_size}, "
          f"compile={args.compile}, MoCo head width {args.moco_mlp_dim}")
    print(f"{'method':8s} {'img/s':>10s} {'ms/step':>9s} {'loss':>8s}")
    for method in args.methods.split(","):
        r = measure(method, args)
        print(f"{method:8s} {r['img_per_s']:10,.0f} {r['ms_per_step']:9.1f} {r['loss']:8.4f}", flush=True)


if __name__ == "__main__":
    main()
