"""Signals to a real `python -m vitscope` process: Ctrl-C (SIGINT) is one line, exit 130, no partial
output; a scheduler's SIGTERM / SIGUSR1 ends analyze and compare the same way (exit 128 + signal) and
makes pretrain and finetune save a checkpoint, say how to resume, and resume to the uninterrupted result."""

import json

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


def signalled(proc: subprocess.Popen, err: bytearray, signum: int, *, group: bool = False) -> str:
    """Send ``signum`` (to the process, or to its whole group as a terminal's Ctrl-C or a scheduler
    does); check it ends with exit code 128 + signum and no traceback; return its last stderr line."""
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    assert proc.wait(timeout=120) == 128 + signum
    time.sleep(0.1)  # let the pump drain the pipe
    text = err.decode(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    lines = [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    assert sum(ln.startswith("vitscope: ") for ln in lines) == 1, lines[-5:]
    return lines[-1]


def interrupted(proc: subprocess.Popen, err: bytearray, signum: int = signal.SIGINT, *, group: bool = False) -> None:
    """``signum`` ends the command as Ctrl-C does: one line naming the signal (none for SIGINT)."""
    by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
    assert signalled(proc, err, signum, group=group) == f"vitscope: interrupted{by}"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.suffix == ".tmp") if folder.exists() else []


def image_folder(folder: Path, n: int) -> Path:
    from PIL import Image

    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.full((32, 32, 3), i % 256, np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signal_during_analyze_with_loader_workers(tmp_path, signum):
    """A terminal's Ctrl-C, or a scheduler's SIGTERM, goes to the whole process group, DataLoader workers
    too: they end quietly, the main process says one line, and no results file (or temp file) is left."""
    folder = image_folder(tmp_path / "imgs", 400)
    # a ViT-S/16 at 224 px: long enough a pass that the signal lands inside it
    proc, err = start(["analyze", "--model", "random:vit_small_patch16_224", "--data", str(folder), "--out",
                       str(tmp_path / "out"), "--batch-size", "4", "--workers", "2", "--device", "cpu"], group=True)
    wait_for(lambda: re.search(rb"\| ([89]|[1-9]\d+)/400", err), proc)  # a batch through each worker: both started
    interrupted(proc, err, signum, group=True)
    assert not (tmp_path / "out" / "results.json").exists() and leftovers(tmp_path / "out") == []


def test_sigterm_during_compare_leaves_no_file(tmp_path):
    folder = image_folder(tmp_path / "imgs", 200)
    proc, err = start(["compare", "--model", "random:vit_small_patch16_224", "--model", "random:vit_small_patch16_224",
                       "--data", str(folder), "--out", str(tmp_path / "out"), "--images", "200", "--batch-size", "4",
                       "--workers", "0", "--device", "cpu"], group=True)
    wait_for(lambda: re.search(rb"\| [1-9]\d*/200", err), proc)
    interrupted(proc, err, signal.SIGTERM, group=True)
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


def test_an_error_raised_while_an_interruption_unwinds_reports_the_interruption(monkeypatch):
    """Ctrl-C inside torch.save made its zip writer raise ``RuntimeError: ... unexpected pos`` while the
    interruption unwound it: exit code 1 and a traceback (seen once in the test above, on a loaded
    machine). The interruption is what ended the run: its line and exit code; other errors still surface."""
    from vitscope import cli

    def interrupted_during_save(signum: int):
        def app(**kwargs):
            try:
                raise cli.Interrupted(signum)
            except cli.Interrupted:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 139456 vs 139348")
        return app

    monkeypatch.setattr(cli, "app", interrupted_during_save(signal.SIGINT))
    assert cli._run([]) == ("interrupted", 130)
    monkeypatch.setattr(cli, "app", interrupted_during_save(signal.SIGTERM))
    assert cli._run([]) == ("interrupted by SIGTERM", 143)

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "app", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli._run([])


def logged_steps(out: Path) -> int:
    log = out / "log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return max((json.loads(ln)["step"] for ln in lines if ln.endswith("}")), default=0)


def resumed_and_uninterrupted(command, tmp_path: Path, timeout: int) -> tuple[dict, dict]:
    """Run ``command(out, *extra)`` with --resume in ``tmp_path/b`` and uninterrupted in ``tmp_path/a``;
    the two final checkpoints (a, b)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    for out, extra in ((tmp_path / "b", ["--resume"]), (tmp_path / "a", [])):
        done = subprocess.run([sys.executable, "-m", "vitscope", *command(out, *extra)], env=env,
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stderr[-2000:]
    return tuple(torch.load(tmp_path / x / "checkpoint.pt", weights_only=True) for x in ("a", "b"))


def test_sigterm_during_pretrain_saves_and_resumes_to_the_uninterrupted_run(tmp_path):
    """SIGTERM mid-epoch: the state after the current step is saved (no epoch checkpoint is due:
    --save-every 100), the line says how to resume, and the resumed run ends bit for bit where an
    uninterrupted one does (data order by epoch, augmentation by step, generators in the checkpoint)."""
    data = tmp_path / "tiny.npz"
    np.savez(data, images=np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8))

    def pretrain(out: Path, *extra: str) -> list[str]:
        # 40 epochs of 4 steps: the signal after step 6 lands long before the end, however slowly this
        # test is scheduled (with 4 epochs a loaded machine once let the run finish first)
        return ["pretrain", "--method", "simmim", "--model", "vit_tiny_patch4_32", "--data", str(data), "--epochs", "40",
                "--batch-size", "16", "--out", str(out), "--save-every", "100", "--device", "cpu",
                "--set", f"model_kwargs={TINY}", "--set", "workers=0", "--set", "tensorboard=false",
                "--set", "log_every=1", "--set", "drop_path=0.1", "--no-progress", *extra]

    proc, err = start(pretrain(tmp_path / "b"))
    wait_for(lambda: logged_steps(tmp_path / "b") >= 6, proc)  # 4 steps per epoch: inside epoch 2
    line = signalled(proc, err, signal.SIGTERM)
    stopped = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert line == (f"vitscope: stopped by SIGTERM after step {stopped['step']}; checkpoint saved to "
                    f"{tmp_path / 'b' / 'checkpoint.pt'}; continue with: vitscope pretrain --resume --out {tmp_path / 'b'}")
    # the checkpoint holds the epoch in progress and the steps done: a signal during the last step of an
    # epoch saves (epoch e, step 4(e + 1)), which resumes at the next epoch (seen on a loaded CI machine)
    assert 6 <= stopped["step"] < 160 and leftovers(tmp_path / "b") == []
    assert 4 * stopped["epoch"] < stopped["step"] <= 4 * (stopped["epoch"] + 1)
    a, b = resumed_and_uninterrupted(pretrain, tmp_path, timeout=300)
    assert a["step"] == b["step"] == 160
    for part in ("model", "objective"):
        for k in a[part]:
            torch.testing.assert_close(b[part][k], a[part][k], rtol=0, atol=0, msg=f"{part}.{k}")


def test_sigusr1_during_finetune_saves_and_resumes_to_the_uninterrupted_run(tmp_path):
    """SLURM's early warning mid-epoch: the state after the current batch is saved (with the generators and
    where in the epoch it was), the line says how to resume, and --resume ends where an uninterrupted run does."""
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(32):
            pixels = np.random.default_rng(100 * (cls == "b") + i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / cls / f"{i}.png")

    def finetune(out: Path, *extra: str) -> list[str]:
        return ["finetune", "--model", "random:vit_tiny_patch4_32", "--train-data", str(tmp_path / "imgs"),
                "--val-data", str(tmp_path / "imgs"), "--out", str(out), "--epochs", "2", "--batch-size", "4",
                "--warmup-epochs", "0", "--mixup", "0.8", "--drop-path", "0.1", "--workers", "0", "--device", "cpu",
                *extra]

    proc, err = start(finetune(tmp_path / "b"))
    wait_for(lambda: re.search(rb"epoch 1: .*\| [2-9]/16", err), proc)  # 16 batches per epoch
    line = signalled(proc, err, signal.SIGUSR1)
    stopped = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert stopped["epoch"] == 0 and 2 <= stopped["batches_done"] < 16 and leftovers(tmp_path / "b") == []
    assert line == (f"vitscope: stopped by SIGUSR1 in epoch 1 after batch {stopped['batches_done']} of 16; checkpoint "
                    f"saved to {tmp_path / 'b' / 'checkpoint.pt'}; continue with the same command and --resume")
    a, b = resumed_and_uninterrupted(finetune, tmp_path, timeout=600)
    assert a["epoch"] == b["epoch"] == 2 and a["history"] == b["history"]
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=0, atol=0, msg=k)
