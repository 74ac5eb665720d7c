"""End to end: ``vitscope probe`` and ``vitscope finetune`` on a tiny random ViT and a 2-class folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from vitscope.commands import finetune as finetune_cmd
from vitscope.commands import probe as probe_cmd
from vitscope.data import model_transform
from vitscope.errors import VitscopeError
from vitscope.eval.labelled import open_labelled
from vitscope.models import load
from vitscope.models.classifier import classifier

MODEL = "random:vit_evaltest_tiny"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    probe_cmd.register(app)
    finetune_cmd.register(app)
    return app


def test_probe_command_end_to_end(app, class_folders, tmp_path, stacked_images):
    train, val = class_folders
    out = tmp_path / "out"
    args = ["probe", "--model", MODEL, "--train-data", str(train), "--val-data", str(val), "--out", str(out),
            "--epochs", "3", "--batch-size", "8", "--k", "5", "--workers", "0", "--device", "cpu",
            "--save-probe", "--probe-at", "cls:2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    res = json.loads((out / "probe.json").read_text())
    prov = res["provenance"]
    assert prov["model"] == MODEL and prov["train_images"] == 16 and prov["val_images"] == 8
    assert prov["train_data"] == str(train) and "torch" in prov["versions"] and prov["seed"] == 0
    assert res["classes"] == ["dark", "light"]
    for kind in ("cls", "gap", "gap_noprefix"):
        assert len(res["knn"]["accuracy"][kind]) == 3 and len(res["linear"][kind]["accuracy"]) == 3
        assert len(res["linear"][kind]["history"]) == 3
    assert len(res["linear"]["pooled"]["accuracy"]) == 1
    # brightness is linearly readable from a random ViT's patch tokens
    assert max(res["linear"]["gap_noprefix"]["accuracy"]) >= 0.75
    for png in ("knn.png", "linear.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res["saved_probe"] == {"path": str(out / "probe.pt"), "feature": "cls", "layer": 2}

    # the saved probe turns the model into a classifier whose accuracy is the reported one
    model = load(MODEL)
    clf, classes = classifier(model, out / "probe.pt")
    data = open_labelled(str(val), model_transform(model))
    with torch.no_grad():
        pred = clf(stacked_images(data)).argmax(1).numpy()
    assert classes == ["dark", "light"]
    assert (pred == data.labels).mean() == pytest.approx(res["linear"]["cls"]["accuracy"][2], abs=1 / 8 + 1e-6)

    # a second run reuses the cached features
    again = CliRunner().invoke(app, args[:-3] + ["--no-linear"])
    assert again.exit_code == 0, again.output
    res2 = json.loads((out / "probe.json").read_text())
    assert res2["knn"] == res["knn"] and "linear" not in res2


def test_finetune_command_with_reinit_and_resume(app, class_folders, tmp_path):
    train, val = class_folders
    out = tmp_path / "ft"
    args = ["finetune", "--model", MODEL, "--train-data", str(train), "--val-data", str(val), "--out", str(out),
            "--epochs", "1", "--batch-size", "8", "--warmup-epochs", "0", "--reinit", "first:1", "--workers", "0",
            "--device", "cpu", "--randaug", ""]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    res = json.loads((out / "finetune.json").read_text())
    assert res["reinit_blocks"] == [0] and res["provenance"]["train_images"] == 16
    assert res["config"]["mixup"] == 0.8 and res["config"]["layer_decay"] == 0.65
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["format"] == "vitscope-checkpoint" and state["arch"] == "vit_evaltest_tiny"
    resumed = CliRunner().invoke(app, args + ["--resume"])  # already complete: nothing more to train
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "finetune.json").read_text())["history"] == res["history"]


def test_unlabelled_data_is_a_one_line_error(app, class_folders, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(flat / f"{i}.png")
    for cmd in ("probe", "finetune"):
        result = CliRunner().invoke(app, [cmd, "--model", MODEL, "--train-data", str(flat), "--val-data",
                                          str(class_folders[1]), "--out", str(tmp_path / cmd)])
        assert isinstance(result.exception, VitscopeError), result.output
        message = str(result.exception)
        assert "no class labels" in message and "\n" not in message


def test_npz_without_labels_and_nothing_to_do(app, class_folders, tmp_path):
    npz = tmp_path / "x.npz"
    np.savez(npz, images=np.zeros((4, 32, 32, 3), np.uint8))
    result = CliRunner().invoke(app, ["probe", "--model", MODEL, "--train-data", str(npz), "--val-data",
                                      str(class_folders[1]), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, VitscopeError) and "no class labels" in str(result.exception)
    result = CliRunner().invoke(app, ["probe", "--model", MODEL, "--train-data", str(class_folders[0]),
                                      "--val-data", str(class_folders[1]), "--out", str(tmp_path / "o"),
                                      "--no-knn", "--no-linear"])
    assert isinstance(result.exception, VitscopeError) and "nothing to do" in str(result.exception)
