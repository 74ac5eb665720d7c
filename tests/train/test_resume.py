"""A real `vitscope pretrain` subprocess killed with SIGKILL resumes to the uninterrupted result."""

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

#: Method-specific options: the hybrid (λ = 0.5) covers MoCo v3, SimMIM and the gradient-cosine
#: log; DINO runs with two local crops (its centre, teacher and frozen last layer are state).
METHOD_ARGS = {
    "hybrid": ["--lambda", "0.5", "--set", "moco_mlp_dim=32", "--set", "moco_dim=16", "--set", "grad_cos_every=3"],
    "dino": ["--set", "local_crops=2", "--set", "dino_out_dim=64", "--set", "dino_hidden_dim=32",
             "--set", "dino_bottleneck_dim=16"],
}


def logged_steps(out: Path) -> int:
    log = out / "log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return max((json.loads(ln)["step"] for ln in lines if ln.endswith("}")), default=0)


@pytest.mark.parametrize("method", sorted(METHOD_ARGS))
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, cli, method):
    def pretrain_cmd(data: Path, out: Path, *extra: str) -> list[str]:
        return [cli.python, *cli.module, "--method", method, "--model", "vit_tiny_patch4_32",
                "--data", str(data), "--epochs", "4", "--batch-size", "16", "--out", str(out), "--save-every", "1",
                "--device", "cpu", "--set", f"model_kwargs={cli.tiny}", *METHOD_ARGS[method],
                "--set", "log_every=1", "--set", "workers=0",
                "--set", "drop_path=0.1", "--set", "tensorboard=false", *extra]

    env = cli.env
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, images=rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8))
    whole = subprocess.run(pretrain_cmd(data, tmp_path / "a"), env=env(), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]

    proc = subprocess.Popen(pretrain_cmd(data, tmp_path / "b"), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while logged_steps(tmp_path / "b") < 7 and proc.poll() is None:  # epoch 1 saved, mid-epoch 2
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = logged_steps(tmp_path / "b")
    assert killed_at < 16
    resumed = subprocess.run(pretrain_cmd(data, tmp_path / "b", "--resume"), env=env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 4 and a["step"] == b["step"] == 16
    for part in ("model", "objective"):
        for k in a[part]:
            torch.testing.assert_close(b[part][k], a[part][k], rtol=0, atol=0, msg=f"{part}.{k}")
    log_a = [json.loads(ln) for ln in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(ln) for ln in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_b] == list(range(1, 17))  # lost steps dropped, no duplicates
    assert [r["loss"] for r in log_b] == [r["loss"] for r in log_a]
    assert method != "hybrid" or any("grad_cos/all" in r for r in log_a)

    # the checkpoint is a model spec: vitscope.models.load gives the trained encoder (DINO: its teacher)
    from vitscope.models import load

    encoder = load(str(tmp_path / "a" / "checkpoint.pt"))
    trained = {k.removeprefix("teacher.vit."): v for k, v in a["objective"].items()
               if k.startswith("teacher.vit.")} if method == "dino" else a["model"]
    assert encoder.state_dict().keys() == trained.keys()
    for k, v in encoder.state_dict().items():
        torch.testing.assert_close(v, trained[k], msg=k)
