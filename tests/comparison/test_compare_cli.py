"""`vitscope compare` end to end on tiny random ViTs and a tiny image folder made by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import typer
from typer.testing import CliRunner

from vitscope.commands.compare import register
from vitscope.comparison.grams import LAYER_TYPES, GramCollector
from vitscope.errors import VitscopeError
from vitscope.metrics.cka import centered_gram
from vitscope.taps import Taps

A, B = "random:vit_compare_test_p8", "random:vit_compare_test_p16"


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return app


def run(*args: str) -> object:
    return CliRunner().invoke(_app(), ["compare", *args, "--workers", "0"])


def test_two_models_write_every_layer_type_and_agreement(image_folder: Path, tmp_path: Path):
    out = tmp_path / "ab"
    res = run("--model", A, "--model", B, "--data", str(image_folder), "--out", str(out),
              "--images", "100", "--batch-size", "8")
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text())
    assert r["format"] == "vitscope-compare" and r["token_reduction"] == "flatten"
    assert r["schema_version"] == 1 and "version" not in r  # one version field: the layout's
    assert [m["spec"] for m in r["models"]] == [A, B]
    assert r["data"]["images"] == 24 and r["data"]["skipped"] == 1  # broken.png reported, not fatal
    assert r["seed"] == 0 and set(r["versions"]) >= {"vitscope", "torch", "timm"}
    assert set(r["cka"]) == set(LAYER_TYPES)
    for m in r["cka"].values():  # 3 blocks of A × 2 blocks of B, values in [-1, 1]
        assert len(m) == 3 and all(len(row) == 2 for row in m)
        assert all(-1.0 <= v <= 1.0 + 1e-9 for row in m for v in row)
    agree = r["agreement"]
    assert agree["images"]["all"] == 24 and agree["labelled_images"] == 24
    assert set(agree["kendall_tau_b"]["all"]) == {"top3"}  # 3 classes: top-5/10/100 clipped
    assert 0.0 <= agree["top1_f1_macro"] <= 1.0
    for t in (*LAYER_TYPES, "all"):
        assert (out / f"cka_{t}.png").stat().st_size > 1000
    assert not list(out.glob(".*tmp"))


def test_model_against_itself_has_unit_diagonal(image_folder: Path, tmp_path: Path):
    out = tmp_path / "aa"
    res = run("--model", A, "--data", str(image_folder), "--out", str(out), "--batch-size", "6",
              "--token-reduction", "gap_noprefix")
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text())
    assert r["self_comparison"] and r["agreement"] is None
    for m in r["cka"].values():
        t = torch.tensor(m)
        assert torch.allclose(torch.diagonal(t), torch.ones(3), atol=1e-9)
        assert torch.allclose(t, t.T, atol=1e-12)


def test_same_architecture_different_seeds_and_bf16(image_folder: Path, tmp_path: Path):
    out = tmp_path / "bf16"
    res = run("--model", A, "--model", A, "--data", str(image_folder), "--out", str(out),
              "--precision", "bf16", "--token-reduction", "cls", "--layer-type", "block", "--layer-type", "qkv")
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text())
    assert set(r["cka"]) == {"block", "qkv"}
    diag = torch.diagonal(torch.tensor(r["cka"]["block"]))
    assert bool((diag < 0.999).all())  # second model gets seed+1: different weights


def _probe(path: Path, dim: int, classes: list[str], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    torch.save({"format": "vitscope-probe", "version": 1, "model": "test", "feature": "cls", "layer": -1,
                "classes": classes, "bn_mean": torch.zeros(dim), "bn_var": torch.ones(dim), "bn_eps": 1e-6,
                "weight": torch.randn(len(classes), dim, generator=g), "bias": torch.zeros(len(classes))}, path)


def test_linear_probes_give_the_class_scores(image_folder: Path, tmp_path: Path):
    pa, pb = tmp_path / "a.pt", tmp_path / "b.pt"
    names = ["bee", "cat", "ant", "dog"]  # matched to the folder's classes by name
    _probe(pa, 32, names, 0)
    _probe(pb, 48, names, 1)
    out = tmp_path / "probes"
    res = run("--model", A, "--model", B, "--probe", str(pa), "--probe", str(pb), "--data", str(image_folder),
              "--out", str(out), "--layer-type", "block")
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text())
    assert "by name" in r["agreement_note"]
    assert set(r["agreement"]["kendall_tau_b"]["all"]) == {"top4"}
    assert r["agreement"]["labelled_images"] == 24
    assert [m["probe"] for m in r["models"]] == [str(pa), str(pb)]


@pytest.mark.parametrize("args, message", [
    (["--model", A, "--model", B, "--model", A], "one model"),
    (["--model", A, "--token-reduction", "mean"], "Valid options are"),
    (["--model", A, "--precision", "fp8"], "Valid options are"),
    (["--model", A, "--layer-type", "mlp"], "Valid options are"),
    (["--model", A, "--model", B, "--probe", "x.pt"], "one --probe per --model"),
    (["--model", A, "--batch-size", "2"], "at least 4"),
    (["--model", "nope:thing"], "unknown model spec"),
    (["--model", A, "--device", "gpu7"], "unknown device"),
])
def test_bad_input_is_a_vitscope_error(image_folder: Path, tmp_path: Path, args, message):
    res = run(*args, "--data", str(image_folder), "--out", str(tmp_path / "x"))
    assert isinstance(res.exception, VitscopeError) and message in str(res.exception)


def test_attention_output_is_the_attention_branch():
    torch.manual_seed(0)
    model = timm.create_model("vit_compare_test_p8").eval()
    x = torch.randn(5, 3, 32, 32)
    collector = GramCollector(3, ["attn_out", "ln1"], "flatten", 1)
    with Taps(model, collector.taps, collector) as taps, torch.no_grad():
        model.forward_features(x)
        taps.check()
    grams = collector.take()
    with torch.no_grad():
        h = model.patch_drop(model.norm_pre(model._pos_embed(model.patch_embed(x))))
        blk = model.blocks[0]
        branch = blk.ls1(blk.attn(blk.norm1(h)))
        ln1 = blk.norm1(h)
    assert torch.allclose(grams["attn_out"][0], centered_gram(branch.flatten(1)), atol=1e-8)
    assert torch.allclose(grams["ln1"][0], centered_gram(ln1.flatten(1)), atol=1e-8)
    assert grams["attn_out"].shape == (3, 5, 5)


def test_pretrained_against_fine_tuned_checkpoint(image_folder: Path, tmp_path: Path):
    pytest.importorskip("vitscope.models.checkpoints", reason="checkpoint loader (models helper) not merged yet")
    torch.manual_seed(0)
    model = timm.create_model("vit_compare_test_p8")
    kwargs = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 3, "num_heads": 2, "mlp_ratio": 2.0,
              "num_classes": 3}
    pt, ft = tmp_path / "pt.pth", tmp_path / "ft.pth"
    state = model.state_dict()
    torch.save({"format": "vitscope-checkpoint", "version": 1, "arch": "vit_compare_test_p8", "arch_kwargs": kwargs,
                "model": state}, pt)
    tuned = {k: v + 0.02 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"format": "vitscope-checkpoint", "version": 1, "arch": "vit_compare_test_p8", "arch_kwargs": kwargs,
                "model": tuned}, ft)
    out = tmp_path / "ptft"
    res = run("--model", str(pt), "--model", str(ft), "--data", str(image_folder), "--out", str(out),
              "--layer-type", "block")
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text())
    assert [m["spec"] for m in r["models"]] == [str(pt), str(ft)]
    diag = torch.diagonal(torch.tensor(r["cka"]["block"]))
    assert bool((diag > 0.9).all()) and bool((diag < 1.0).all())


def test_images_are_sampled_in_random_order(image_folder: Path):
    from vitscope.comparison.run import sample_images
    from vitscope.data.images import ImageFolder

    ds = ImageFolder(image_folder, lambda im: torch.zeros(1))
    picked = sample_images(ds, 12, seed=3)
    labels = [picked[i][1] for i in range(12)]
    assert len(set(picked.indices)) == 12  # without replacement
    assert labels != sorted(labels)  # not class by class: every batch a random sample
    assert [picked[i][2] for i in range(12)] == [sample_images(ds, 12, seed=3)[i][2] for i in range(12)]


def test_torchrun_two_processes_equal_one_process(image_folder: Path, tmp_path: Path):
    """Whole batches are dealt to the ranks, so 2 gloo processes see the 1-process batches: same CKA."""
    import os
    import subprocess
    import sys

    import numpy as np

    a, b = "random:vit_tiny_patch4_32", "random:vit_small_patch4_32"
    common = ["--model", a, "--model", b, "--data", str(image_folder), "--batch-size", "5",
              "--workers", "0", "--device", "cpu"]
    res = run(*common[:-2], "--out", str(tmp_path / "one"))
    assert res.exit_code == 0, res.output
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29523", "-m", "vitscope", "compare", *common,
                           "--out", str(tmp_path / "two")],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["processes"] == 2 and two["data"]["images"] == one["data"]["images"] == 24
    assert two["data"]["skipped"] == 1 and two["data"]["cka_images"] == one["data"]["cka_images"] == 24
    for t in one["cka"]:
        np.testing.assert_allclose(two["cka"][t], one["cka"][t], rtol=0, atol=1e-9, err_msg=t)
