"""Ctrl-C (SIGINT) during a real `python -m vitscope` process: one line, exit 130, no partial output."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = '{"img_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2}'


def start(args: list[str], *, group: bool = False) -> tuple[subprocess.Popen, bytearray]:
    """Start `python -m vitscope ARGS`; its stderr collects into the returned buffer as it comes."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vitscope", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=group)
    err = bytearray()

    def pump() -> None:
        while chunk := os.read(proc.stderr.fileno(), 4096):
            err.extend(chunk)

    threading.Thread(target=pump, daemon=True).start()
    return proc, err


@pytest.fixture(autouse=True)
def no_stray_process(monkeypatch):
    """End a command a failed test left running (only the ones this module started)."""
    started: list[subprocess.Popen] = []
    real = subprocess.Popen

    def tracked(*args, **kwargs):
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", tracked)
    yield
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the command ended before it could be interrupted"
        assert time.monotonic() < deadline, "the command never reached the point to interrupt"
        time.sleep(0.05)


def interrupted(proc: subprocess.Popen, err: bytearray, *, group: bool = False) -> str:
    """Send SIGINT (to the process, or to its whole group as a terminal's Ctrl-C does); return stderr."""
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    time.sleep(0.1)  # let the pump drain the pipe
    text = err.decode(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    lines = [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    assert lines[-1] == "vitscope: interrupted"
    assert sum("interrupted" in ln for ln in lines) == 1
    return text


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.suffix == ".tmp") if folder.exists() else []


def test_ctrl_c_during_analyze_with_loader_workers(tmp_path):
    """A terminal's Ctrl-C goes to the whole process group, DataLoader workers too: they end quietly,
    the main process says one line, and no results file (or temp file) is left."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    for i in range(400):
        Image.fromarray(np.full((32, 32, 3), i % 256, np.uint8)).save(folder / f"{i:03d}.png")
    # a ViT-S/16 at 224 px: long enough a pass that the signal lands inside it
    proc, err = start(["analyze", "--model", "random:vit_small_patch16_224", "--data", str(folder), "--out",
                       str(tmp_path / "out"), "--batch-size", "4", "--workers", "2", "--device", "cpu"], group=True)
    wait_for(lambda: re.search(rb"\| [1-9]\d*/400", err), proc)  # at least one batch through the workers
    interrupted(proc, err, group=True)
    assert not (tmp_path / "out" / "results.json").exists() and leftovers(tmp_path / "out") == []


def test_ctrl_c_during_pretrain_keeps_the_last_checkpoint(tmp_path):
    data = tmp_path / "tiny.npz"
    np.savez(data, images=np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8))
    out = tmp_path / "run"
    proc, err = start(["pretrain", "--method", "simmim", "--model", "vit_tiny_patch4_32", "--data", str(data),
                       "--epochs", "1000", "--batch-size", "16", "--out", str(out), "--save-every", "1",
                       "--device", "cpu", "--set", f"model_kwargs={TINY}", "--set", "workers=0",
                       "--set", "tensorboard=false"])
    wait_for(lambda: (out / "checkpoint.pt").exists(), proc)
    time.sleep(0.3)
    interrupted(proc, err)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] >= 1 and leftovers(out) == []
