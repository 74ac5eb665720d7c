"""vitscope.pretrain: the command's one code path; the finished run as a result (pretrain.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import run_cli
from matplotlib.figure import Figure

import vitscope
from vitscope.errors import VitscopeError

TINY = {"img_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2}
SETTINGS = {"epochs": 2, "batch_size": 8, "device": "cpu", "tensorboard": False, "log_every": 1, "workers": 0,
            "model_kwargs": TINY}


@pytest.fixture
def images(tmp_path):
    path = tmp_path / "imgs.npz"
    np.savez(path, images=np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8))
    return str(path)


def test_the_api_and_the_command_train_the_same_run(images, tmp_path, monkeypatch, capsys):
    run = vitscope.pretrain("simmim", images, out=tmp_path / "api", progress=False, **SETTINGS)
    assert isinstance(run, vitscope.Pretraining) and run.folder == tmp_path / "api"
    assert {p.name for p in run.folder.iterdir()} >= {"checkpoint.pt", "config.json", "log.jsonl", "pretrain.json"}
    assert run.results["training"]["steps"] == 4 and [r["step"] for r in run.results["log"]] == [1, 2, 3, 4]
    sets = [a for k, v in SETTINGS.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    code, out, err = run_cli(monkeypatch, capsys, "pretrain", "--method", "simmim", "--data", images, "--out",
                             str(tmp_path / "cli"), "--no-progress", *sets)
    assert code in (0, None), err
    assert "step 4: loss" in out and str(tmp_path / "cli") in out
    cli = vitscope.read(tmp_path / "cli")
    assert {**cli.results["config"], "out": ""} == {**run.results["config"], "out": ""}
    assert [r["step"] for r in cli.results["log"]] == [1, 2, 3, 4]
    # the same computation twice in one process: equal up to the order of float sums across threads
    assert [r["loss"] for r in cli.results["log"]] == pytest.approx([r["loss"] for r in run.results["log"]], rel=1e-5)


def test_the_finished_run_reads_back_as_a_table_a_figure_and_a_checkpoint(images, tmp_path):
    run = vitscope.pretrain("hybrid", images, out=tmp_path / "run", progress=False, lam=0.2, **SETTINGS)
    again = vitscope.read(tmp_path / "run")
    assert isinstance(again, vitscope.Pretraining) and again.results == run.results
    df = run.to_frame()
    assert list(df.columns) == ["method", "model", "quantity", "step", "epoch", "value"]
    assert {"loss", "loss_cl", "loss_mim", "lr", "img_per_s"} <= set(df.quantity)  # the hybrid's two parts
    loss = df[df.quantity == "loss"]
    assert list(loss.step) == [1, 2, 3, 4] and list(loss.value) == [r["loss"] for r in run.results["log"]]
    t = run.results["training"]
    assert (t["loss_first"], t["loss_last"]) == (run.results["log"][0]["loss"], run.results["log"][-1]["loss"])
    assert isinstance(run.plot(), Figure) and "hybrid" in repr(run)
    assert vitscope.load(run.checkpoint).blocks.__len__() == TINY["depth"]


def test_bad_settings_and_a_resume_without_a_run_are_one_line_errors(images, tmp_path):
    with pytest.raises(VitscopeError, match=r"unknown config key\(s\) \['epochz'\]"):
        vitscope.pretrain("moco", images, out=tmp_path / "a", epochz=3)
    with pytest.raises(VitscopeError, match="no run to continue"):
        vitscope.pretrain(out=tmp_path / "b", resume=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
