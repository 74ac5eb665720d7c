#!/usr/bin/env python3
"""The DINO unfreezing sweep of docs/pretrain.md (issue 30): short runs of the zoo's DINO at the
sweep's recipe, ranked by teacher entropy and KL 200 steps after the prototypes unfreeze.

The recipe (``RECIPE``): the zoo's 6 × 96 ViT on CIFAR-10 train, batch 128, lr 5e-4 with 624
warm-up steps on the 16-epoch cosine (6,240 steps), teacher momentum 0.99, τ_t 0.04, K 4,096,
two global crops, prototypes frozen for epoch 1 (390 steps), fp32, one thread per run (two runs
side by side on a 2-core CPU), logged every 10 steps, stopped with SIGTERM (which saves) once
step ``--until`` (default 600) is logged.

    dino_sweep.py trunk   --runs DIR                    # the baseline, keeping checkpoint-epoch1.pt (step 390)
    dino_sweep.py fork    --runs DIR NAME KEY=VALUE...  # the trunk's state at step 390, KEY changed from there on
    dino_sweep.py scratch --runs DIR NAME KEY=VALUE...  # a run from step 0 with KEY changed (K, crops, ...)
    dino_sweep.py table   --runs DIR                    # the markdown table of every run in DIR
    dino_sweep.py figure  --runs DIR --out FILE.png     # teacher entropy and KL against steps, and a CSV beside it

A change that acts only once the prototypes are unfrozen (their lr, their weight decay) gives in a
fork exactly the run from scratch, at a third of the cost; a fork of any other setting (teacher
temperature, centring, momentum, KoLeo) is that setting switched on at the unfreezing, which the
table says. Each run folder is an ordinary ``vitscope pretrain`` run, resumable with ``--resume``.
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

RECIPE = {
    "method": "dino", "model": "vit_tiny_patch4_32", "data": "/tmp/cifar10/train", "epochs": 16, "batch_size": 128,
    "lr": 5e-4, "warmup_epochs": 1.6, "precision": "fp32", "dino_m": 0.99,
    "model_kwargs": {"depth": 6, "embed_dim": 96, "num_heads": 3}, "save_every": 1, "log_every": 10,
    "tensorboard": False,
}
UNFREEZE = 390  # dino_freeze_last_layer = 1 epoch of 390 steps
AFTER = UNFREEZE + 200
TRUNK = "trunk"


def vitscope() -> list[str]:
    exe = Path(sys.executable).with_name("vitscope")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "vitscope"]


def last_step(run: Path) -> int:
    try:
        lines = (run / "log.jsonl").read_text().splitlines()
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (OSError, ValueError, KeyError):
        return 0


def train_until(run: Path, until: int, args: list[str]) -> None:
    """``vitscope pretrain ARGS --out RUN`` on one thread until step ``until`` is logged, then SIGTERM."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(run.with_suffix(".stdout"), "a") as log:
        proc = subprocess.Popen([*vitscope(), "pretrain", "--out", str(run), "--no-progress", *args], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            time.sleep(5)
            if last_step(run) >= until:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
    print(f"{run.name}: step {last_step(run)}")


def settings(pairs: list[str]) -> dict[str, object]:
    from vitscope.train.config import parse_set

    return parse_set(pairs)


def recipe_args(extra: dict[str, object]) -> list[str]:
    cfg = {**RECIPE, **extra}
    return [a for k, v in cfg.items() for a in ("--set", f"{k}={json.dumps(v) if not isinstance(v, str) else v}")]


def fork(runs: Path, name: str, changes: dict[str, object]) -> Path:
    """A run folder holding the trunk's state after step 390 with ``changes`` in its config."""
    from vitscope.train import checkpoint
    from vitscope.train.config import PretrainConfig, apply_overrides

    trunk, out = runs / TRUNK, runs / name
    state = checkpoint.load(trunk / f"checkpoint-epoch{UNFREEZE // 390}.pt")
    assert int(state["step"]) == UNFREEZE, state["step"]
    cfg = apply_overrides(apply_overrides(PretrainConfig(), state["config"], "the trunk"), changes, "the fork")
    state["config"] = json.loads(cfg.to_json())
    cfg.out = str(out)
    out.mkdir(parents=True, exist_ok=False)
    checkpoint.save(out / "checkpoint.pt", state)
    (out / "config.json").write_text(cfg.to_json())
    kept = [ln for ln in (trunk / "log.jsonl").read_text().splitlines() if json.loads(ln)["step"] <= UNFREEZE]
    (out / "log.jsonl").write_text("".join(ln + "\n" for ln in kept))
    (out / "fork.json").write_text(json.dumps({"from": str(trunk), "step": UNFREEZE, "changes": changes}))
    return out


def at(log: list[dict], step: int) -> dict:
    return min(log, key=lambda r: abs(r["step"] - step))


def table(runs: Path) -> str:
    """One row per run of ``runs`` that passed the unfreezing (the official loop's logs too): teacher
    entropy and KL at step 390 and 200 steps later (or at the last step of a run stopped before)."""
    rows = ["| run | changed | from | entropy / KL at 390 | 200 steps later | lowest entropy after 390 (step) "
            "| KL then ÷ at 390 |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, log in runs_logs(runs).items():
        if log[-1]["step"] <= UNFREEZE:
            continue
        forked, scratch = runs / name / "fork.json", runs / name / "sweep.json"
        changes = json.loads((forked if forked.is_file() else scratch).read_text())["changes"] if (
            forked.is_file() or scratch.is_file()) else {}
        a, b = at(log, UNFREEZE), at(log, AFTER)
        low = min((r for r in log if UNFREEZE <= r["step"] <= AFTER), key=lambda r: r["teacher_entropy"])
        changed = ", ".join(f"{k}={v}" for k, v in changes.items()) or (
            "official loop" if name.startswith("official") else "none (baseline)")
        then = f"{b['teacher_entropy']:.2f} / {b['kl']:.2f}" + (
            f" (stopped at {b['step']})" if b["step"] < AFTER - 5 else "")
        rows.append(f"| {name} | {changed} | {'step 390' if forked.is_file() else 'step 0'} | "
                    f"{a['teacher_entropy']:.2f} / {a['kl']:.2f} | {then} | "
                    f"{low['teacher_entropy']:.2f} ({low['step']}) | {b['kl'] / a['kl']:.2f} |")
    return "\n".join(rows)


def runs_logs(runs: Path) -> dict[str, list[dict]]:
    """Every run's log (the official loop's ``official*.jsonl`` too), by name."""
    logs = {p.name: [json.loads(ln) for ln in (p / "log.jsonl").read_text().splitlines() if ln.strip()]
            for p in sorted(runs.iterdir()) if (p / "log.jsonl").is_file()}
    logs.update({p.stem: [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]
                 for p in sorted(runs.glob("official*.jsonl"))})
    return {k: v for k, v in logs.items() if v}


def out_dim(runs: Path, name: str) -> int:
    """K of a run: its config's ``dino_out_dim``, 4,096 for the official loop's runs (its default)."""
    config = runs / name / "config.json"
    return int(json.loads(config.read_text())["dino_out_dim"]) if config.is_file() else 4096


def figure(runs: Path, out: Path) -> None:
    """Teacher entropy and teacher-student KL against steps for every run (the DINO paper's collapse
    monitors, Caron et al. Fig. 7), the unfreezing marked; the numbers as a CSV beside the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = runs_logs(runs)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    colours = iter(plt.cm.tab20.colors)  # 20 distinct colours: the default cycle repeats after 10 runs
    for name, log in logs.items():
        forked = (runs / name / "fork.json").is_file()
        shown = [r for r in log if not forked or r["step"] >= UNFREEZE]  # a fork's log before 390 is the trunk's
        log_k = math.log(out_dim(runs, name))
        style = dict(lw=2.4, color="black") if name == TRUNK else dict(lw=1.3, color=next(colours), ls="--" if (
            name.startswith("official")) else "-")
        steps = [r["step"] for r in shown]
        axes[0].plot(steps, [r["teacher_entropy"] / log_k for r in shown], label=name, **style)
        axes[1].plot(steps, [r["kl"] for r in shown], label=name, **style)
    for ax, title in zip(axes, ("teacher entropy ÷ log K (1 = uniform over the K prototypes)",
                                "KL(teacher ‖ student) (nats; 0 = collapsed)")):
        ax.axvline(UNFREEZE, color="grey", lw=0.8)
        ax.set(xlabel="training step (batch 128)", title=title, xlim=(0, AFTER + 20))
    axes[0].set_ylim(0, 1.05)
    axes[1].set_ylim(bottom=0)
    axes[1].legend(fontsize=7, ncol=2, loc="upper left")
    fig.suptitle("DINO around the prototypes' unfreezing (grey line, step 390): the collapse monitors of "
                 "Caron et al. Fig. 7, 6 × 96 ViT on CIFAR-10", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    rows = ["run,step,loss,teacher_entropy,kl"] + [f"{name},{r['step']},{r['loss']:.4f},{r['teacher_entropy']:.4f},"
                                                    f"{r['kl']:.4f}" for name, log in logs.items() for r in log]
    out.with_suffix(".csv").write_text("\n".join(rows) + "\n")
    print(out, out.with_suffix(".csv"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["trunk", "fork", "scratch", "table", "figure"])
    ap.add_argument("name", nargs="?")
    ap.add_argument("changes", nargs="*", help="KEY=VALUE config changes")
    ap.add_argument("--runs", type=Path, default=Path.home() / "vitscope-runs" / "dino-sweep")
    ap.add_argument("--until", type=int, default=AFTER + 10)
    ap.add_argument("--out", type=Path, default=Path("docs/figures/dino-unfreezing-sweep.png"))
    a = ap.parse_args()
    a.runs.mkdir(parents=True, exist_ok=True)
    if a.what == "table":
        print(table(a.runs))
        return
    if a.what == "figure":
        figure(a.runs, a.out)
        return
    if a.what == "trunk":
        train_until(a.runs / TRUNK, a.until, recipe_args({"keep_every": 1}))
        return
    if not a.name:
        ap.error(f"{a.what} needs a NAME")
    changes = settings(a.changes)
    if a.what == "fork":
        out = fork(a.runs, a.name, changes)
        train_until(out, a.until, ["--resume"])
    else:
        out = a.runs / a.name
        out.mkdir(parents=True, exist_ok=False)
        (out / "sweep.json").write_text(json.dumps({"changes": changes}))
        train_until(out, a.until, recipe_args(changes))


if __name__ == "__main__":
    main()
