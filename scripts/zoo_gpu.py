#!/usr/bin/env python3
"""Train the zoo's CIFAR-10 models on one GPU within a wall-clock budget, then probe and zoo-add them.

    scripts/zoo_gpu.py --data CIFAR_ROOT --out DIR --train-until SECONDS [--methods moco dino ...]

CIFAR_ROOT is an ImageFolder with train/ and test/. The runs share the GPU as concurrent processes
(the zoo architecture, 6 blocks of width 96, is far too small to fill one alone). The recipe is each
model's zoo recipe (its line in the zoo's manifest) with three changes for the GPU: batch 512 (the CPU
runs used 128), the peak learning rate scaled by the square root of the batch ratio (doubled from 128:
the square-root scaling of AdamW learning rates), and a warm-up of 10% of the run; bf16 autocast. DINO keeps its prototypes frozen for the whole
run, as on the CPU. The epoch count is not guessed: every run first trains for ``--calibrate`` seconds
side by side, the slowest one's steps per second fix the largest whole number of epochs (at most
``--max-epochs``) that ends by ``--train-until`` seconds after the start, with a 10% margin. A run still
going at that time is stopped with SIGTERM (it saves a resumable checkpoint) and is added with
``epochs < epochs_planned``. Then each model is probed (10,000 / 2,000 images, 20 epochs, as the CPU
zoo) and added to DIR/zoo with ``vitscope zoo add``. Run logs stay in DIR/pretrain-METHOD.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from vitscope.errors import VitscopeError
from vitscope.runlog import read_log, training_summary
from vitscope.zoo_manifest import manifest

STEPS_PER_LOG = 20


def recipe(method: str) -> dict:
    """The zoo recipe of ``method`` (the config keys a run is reproduced from)."""
    return dict(manifest()[f"{method}-cifar10"]["recipe"])


def gpu_config(method: str, data: str, out: Path, epochs: int, batch: int) -> dict:
    cfg = recipe(method)
    cpu_batch = cfg["batch_size"]
    cfg.update(data=data, out=str(out), epochs=epochs, batch_size=batch, precision="auto",
               lr=cfg["lr"] * math.sqrt(batch / cpu_batch), warmup_epochs=round(0.1 * epochs, 3),
               log_every=STEPS_PER_LOG, save_every=5, tensorboard=False, device="auto")
    if method == "dino":
        cfg["dino_freeze_last_layer"] = float(epochs)  # frozen prototypes for the whole run (docs/pretrain.md)
    return cfg


def launch(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)


def pretrain(method: str, data: str, out: Path, epochs: int, batch: int) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    cfg_file = out.parent / f"{out.name}.config.json"
    cfg_file.write_text(json.dumps(gpu_config(method, data, out, epochs, batch)))
    return launch([sys.executable, "-m", "vitscope", "pretrain", "--config", str(cfg_file), "--no-progress"],
                  out.parent / f"{out.name}.log")


def records(run: Path) -> list[dict]:
    """The run's log records so far (none yet: empty); a torn last line is left out."""
    try:
        return read_log(run)
    except VitscopeError:
        return []


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train-until", type=float, required=True, help="seconds after the start")
    p.add_argument("--methods", nargs="+", default=["moco", "dino", "simmim", "mae", "hybrid"])
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--calibrate", type=float, default=35.0, help="seconds of side-by-side training to time")
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--commit", default="?", help="the commit trained, for the manifest note")
    a = p.parse_args()
    t0 = time.time()
    train, test = f"{a.data}/train", f"{a.data}/test"
    a.out.mkdir(parents=True, exist_ok=True)
    from vitscope.train.gpu_data import load_folder_cached  # imports torch

    images, _ = load_folder_cached(Path(train), workers=os.cpu_count() or 4)  # decoded once, not by every run
    spe = len(images) // a.batch_size

    # 1. time every run side by side
    t_launch = time.time()
    cal = {m: pretrain(m, train, a.out / f"calibrate-{m}", a.max_epochs, a.batch_size) for m in a.methods}
    started = {}
    while time.time() - t0 < 150:
        time.sleep(2)
        for m in a.methods:
            r = records(a.out / f"calibrate-{m}")
            if r and m not in started:
                started[m] = r[0]["time"]
        if len(started) == len(a.methods) and time.time() - max(started.values()) > a.calibrate:
            break
        if any(proc.poll() is not None for proc in cal.values()):
            sys.exit(f"a calibration run ended early: see {a.out}/calibrate-*.log")
    rates = {}
    for m, proc in cal.items():
        proc.kill()
        proc.wait()
        r = records(a.out / f"calibrate-{m}")
        if len(r) < 2:
            sys.exit(f"{m}: fewer than two log records after {a.calibrate:.0f} s: raise --calibrate")
        rates[m] = (r[-1]["step"] - r[1]["step"]) / (r[-1]["time"] - r[1]["time"])  # past the first log: warm
    startup = max(started.values()) - t_launch + 5  # a run's start-up to its first log (not the decoding above)
    window = a.train_until - (time.time() - t0) - startup
    epochs = max(1, min(a.max_epochs, int(0.9 * window * min(rates.values()) / spe)))
    print(f"steps/s side by side: { {m: round(v, 1) for m, v in rates.items()} }; "
          f"{window:.0f} s to train: {epochs} epochs of {spe} steps", flush=True)

    # 2. train
    t_train = time.time()
    runs = {m: pretrain(m, train, a.out / f"pretrain-{m}", epochs, a.batch_size) for m in a.methods}
    while any(proc.poll() is None for proc in runs.values()) and time.time() - t0 < a.train_until:
        time.sleep(2)
    for m, proc in runs.items():
        if proc.poll() is None:
            print(f"{m}: still training at the deadline: SIGTERM (saves a checkpoint)", flush=True)
            proc.send_signal(signal.SIGTERM)
    for m, proc in runs.items():
        proc.wait()
        print(f"{m}: exit {proc.returncode}, {time.time() - t_train:.0f} s", flush=True)

    # 3. probe as the CPU zoo was probed, then add to DIR/zoo
    probes = {m: launch([sys.executable, "-m", "vitscope", "probe", "--model", str(a.out / f"pretrain-{m}/checkpoint.pt"),
                         "--train-data", train, "--val-data", test, "--images", "10000", "--val-images", "2000",
                         "--epochs", "20", "--features", "cls", "--no-cache-features", "--out", str(a.out / f"probe-{m}")],
                        a.out / f"probe-{m}.log") for m in a.methods}
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    for m, proc in probes.items():
        proc.wait()
        run = a.out / f"pretrain-{m}"
        done = training_summary(run)  # what `zoo add` records, also for a run stopped at the deadline
        cpu_batch = recipe(m)["batch_size"]
        note = (f"zoo v2 (GPU): vitscope pretrain at {a.commit}, scripts/zoo_gpu.py: the zoo recipe of this method "
                f"with batch {a.batch_size} (not {cpu_batch}), lr x{math.sqrt(a.batch_size / cpu_batch):g} "
                f"(square-root scaling), warm-up 10% of the run, bf16 autocast, {len(a.methods)} runs sharing the GPU")
        if m == "dino":
            note += "; deviation: the K = 4,096 prototypes stay frozen for the whole run; the shipped encoder is the EMA teacher"
        if m == "hybrid":
            note = "lambda = 0.2: L = 0.8 L_SimMIM + 0.2 L_MoCo; " + note
        subprocess.run([sys.executable, "-m", "vitscope", "zoo", "add", f"{m}-cifar10", "--run", str(run),
                        "--probe", str(a.out / f"probe-{m}"), "--zoo-dir", str(a.out / "zoo"),
                        "--hardware", f"1x {gpu} shared by {len(a.methods)} concurrent runs; {os.cpu_count()} CPU cores",
                        "--budget", (f"GPU, {epochs} epochs ({done['steps']:,} steps of {a.batch_size}) in bf16 "
                                     f"autocast, {done['wall_seconds'] / 60:.1f} min wall"),
                        "--note", note], check=False)
    print(f"done in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
