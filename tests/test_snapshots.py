"""``vitscope trajectory`` / ``vitscope.trajectory`` on a small real run trained here (4 steps, snapshots
at steps 0, 2 and 4): each snapshot's numbers equal ``analyze`` of that snapshot alone; resumable; the
command writes what the API writes; bad input is one line and keeps what was analysed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from cli_helpers import run_cli, without
from matplotlib.figure import Figure

import vitscope
import vitscope.snapshots as engine
from vitscope.models.checkpoints import encoder_safetensors
from vitscope.models.timm_factory import create_timm
from vitscope.reporting.trajectory import table_markdown
from vitscope.results import write_atomic

TINY = {"img_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2}
METRICS = "attention,similarity,fourier,norms"
RUN = {"batch_size": 4, "workers": 0, "progress": False}
VOLATILE = {"seconds", "created", "command"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step MoCo v3 run with snapshots every 2 steps, and its images."""
    tmp = tmp_path_factory.mktemp("traj")
    images = tmp / "imgs.npz"
    np.savez(images, images=np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8))
    vitscope.pretrain("moco", str(images), out=tmp / "run", progress=False, snapshot_every=2, epochs=2, batch_size=6,
                      device="cpu", tensorboard=False, log_every=1, workers=0, model_kwargs=TINY, moco_mlp_dim=32,
                      moco_dim=16)
    return tmp / "run", str(images)


def plain(obj):
    return without(obj, VOLATILE)


def test_each_snapshot_equals_analyze_of_it_alone(trained, tmp_path):
    run, images = trained
    t = vitscope.trajectory(run, images, out=tmp_path / "t", metrics=METRICS, **RUN)
    assert [e["step"] for e in t.snapshots] == [0, 2, 4] and [e["epoch"] for e in t.snapshots] == [0, 1, 2]
    for e in t.snapshots:
        alone = vitscope.analyze(e["path"], images, metrics=METRICS, **RUN)
        assert e["metrics"] == alone.metrics, e["path"]
    assert t.snapshots[0]["metrics"] != t.snapshots[-1]["metrics"]  # it trained
    assert [r["step"] for r in t.results["training_loss"]] == [1, 2, 3, 4]
    assert {p.name for p in (tmp_path / "t").iterdir()} == {"trajectory.json", "trajectory.md", "trajectory.png",
                                                            "trajectory_heatmap.png"}
    back = vitscope.read(tmp_path / "t")
    assert isinstance(back, vitscope.Trajectory) and back.results == t.results
    df = t.to_frame()
    nmi = df[(df.quantity == "nmi") & df["head"].isna()]
    assert nmi[["step", "block"]].values.tolist() == [[s, b] for s in (0, 2, 4) for b in (1, 2)]
    assert nmi.value.tolist() == [v for e in t.snapshots for v in e["metrics"]["attention"]["nmi"]]
    assert set(df.metric) == {"attention", "similarity", "fourier", "norms"}
    assert isinstance(t.plot(), Figure) and isinstance(t.plot("heatmap"), Figure)
    md = (tmp_path / "t" / "trajectory.md").read_text()
    assert "| 4 | 2 |" in md and "NMI of attention (later half)" in md and "high-norm outlier tokens" in md
    page = vitscope.report([tmp_path / "t"], tmp_path / "report.html").read_text()
    assert "properties along training" in page and "<td>4</td><td>2</td>" in page and "trajectory_heatmap.png" in page


def test_resumed_trajectory_analyses_only_new_snapshots(trained, tmp_path, monkeypatch):
    run, images = trained
    snaps = sorted((run / "snapshots").iterdir())
    vitscope.trajectory(snaps[:2], images, out=tmp_path / "t", metrics=METRICS, **RUN)
    calls = []
    real = engine.analyze_model
    monkeypatch.setattr(engine, "analyze_model", lambda model, *a, **k: calls.append(1) or real(model, *a, **k))
    t = vitscope.trajectory(run, images, out=tmp_path / "t", metrics=METRICS, **RUN)
    assert len(calls) == 1 and [e["step"] for e in t.snapshots] == [0, 2, 4]
    whole = vitscope.trajectory(run, images, metrics=METRICS, **RUN)
    assert [e["metrics"] for e in whole.snapshots] == [e["metrics"] for e in t.snapshots]
    with pytest.raises(vitscope.VitscopeError, match="made with other settings"):
        vitscope.trajectory(run, images, out=tmp_path / "t", metrics="attention", **RUN)


def test_the_command_writes_what_the_api_writes(trained, tmp_path, monkeypatch, capsys):
    run, images = trained
    code, out, err = run_cli(monkeypatch, capsys, "trajectory", str(run), "--data", images, "--out",
                             str(tmp_path / "cli"), "--batch-size", "4", "--workers", "0", "--no-progress")
    assert code in (0, None), err
    assert "3 snapshots (steps 0–4)" in out
    vitscope.trajectory(run, images, out=tmp_path / "api", **RUN)
    names = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "api").iterdir())
    read = lambda folder: plain(json.loads((folder / "trajectory.json").read_text()))  # noqa: E731
    assert read(tmp_path / "cli") == read(tmp_path / "api")
    for name in ("trajectory.png", "trajectory_heatmap.png", "trajectory.md"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes(), name


def one_line_error(monkeypatch, capsys, *args: str) -> str:
    code, _, err = run_cli(monkeypatch, capsys, "trajectory", *args, "--batch-size", "4", "--workers", "0",
                           "--no-progress")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_bad_input_is_one_line_and_keeps_what_was_analysed(trained, tmp_path, monkeypatch, capsys):
    run, images = trained
    (tmp_path / "empty").mkdir()
    assert "no snapshots in" in one_line_error(monkeypatch, capsys, str(tmp_path / "empty"), "--data", images,
                                               "--out", str(tmp_path / "o0"))
    assert not (tmp_path / "o0").exists()

    broken = tmp_path / "broken"
    shutil.copytree(run / "snapshots", broken)
    (broken / "step-000009.safetensors").write_bytes(b"not a safetensors file")
    err = one_line_error(monkeypatch, capsys, str(broken), "--data", images, "--out", str(tmp_path / "o1"))
    assert "step-000009.safetensors" in err and "3 analysed snapshots kept" in err
    kept = vitscope.read(tmp_path / "o1")
    assert [e["step"] for e in kept.snapshots] == [0, 2, 4] and (tmp_path / "o1" / "trajectory.png").is_file()

    other = tmp_path / "other"
    shutil.copytree(run / "snapshots", other)
    torch.manual_seed(0)
    deeper = create_timm("vit_tiny_patch4_32", pretrained=False, **{**TINY, "depth": 3})
    write_atomic(other / "step-000006.safetensors", encoder_safetensors(deeper.state_dict(), "vit_tiny_patch4_32",
                                                                        {**TINY, "depth": 3}, step="6"))
    err = one_line_error(monkeypatch, capsys, str(other), "--data", images, "--out", str(tmp_path / "o2"))
    assert "another architecture ({'depth': 3})" in err and "3 analysed snapshots kept" in err
    assert [e["step"] for e in vitscope.read(tmp_path / "o2").snapshots] == [0, 2, 4]


def test_knn_bank_gives_what_probe_gives_for_each_snapshot(trained, tmp_path):
    run, images = trained
    rng = np.random.default_rng(1)
    labelled = tmp_path / "labelled.npz"
    np.savez(labelled, images=rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8), labels=np.arange(10) % 2)
    bank = tmp_path / "bank.npz"
    np.savez(bank, images=rng.integers(0, 256, (14, 16, 16, 3), dtype=np.uint8), labels=np.arange(14) % 2)
    t = vitscope.trajectory(run, str(labelled), knn=str(bank), metrics="attention", **RUN)
    for e in t.snapshots:
        p = vitscope.probe(e["path"], str(bank), str(labelled), linear=False, features="cls", cache_features=False,
                           **RUN)
        assert e["probe"]["knn"]["accuracy"]["cls"] == p.results["knn"]["accuracy"]["cls"], e["path"]
    df = t.to_frame()
    knn = df[df.metric == "knn"]
    assert len(knn) == 3 * 2 and set(knn.quantity) == {"accuracy"} and set(knn.figure) == {"Shekhar Fig. 3"}
    assert "20-NN accuracy (later half)" in table_markdown(t.results)
    with pytest.raises(vitscope.VitscopeError, match="has no class labels"):
        vitscope.trajectory(run, images, knn=str(bank), metrics="attention", **RUN)


def test_steps_come_from_snapshots_and_checkpoints_or_else_the_order_given(trained, tmp_path):
    run, images = trained
    snaps, run_dir = engine.find_snapshots([run / "checkpoint.pt", run / "snapshots" / "step-000002.safetensors"])
    assert [(s.step, s.epoch, s.ordinal) for s in snaps] == [(2, 1.0, False), (4, 2.0, False)] and run_dir is None
    plain = tmp_path / "plain.pt"
    torch.save(vitscope.load(str(run / "checkpoint.pt")).state_dict(), plain)
    spec = f"{plain}@vit_tiny_patch4_32(img_size=16, embed_dim=32, depth=2, num_heads=2)"  # PATH@ARCH
    t = vitscope.trajectory([str(run / "snapshots" / "step-000004.safetensors"), spec], images, metrics="attention",
                            **RUN)
    assert [e["step"] for e in t.snapshots] == [0, 1] and t.results["step_axis"] == "position in the order given"
    distance = [e["metrics"]["attention"]["distance"] for e in t.snapshots]
    assert t.snapshots[1]["path"] == spec and distance[0] == pytest.approx(distance[1], rel=1e-4)  # fp16 vs fp32


def test_trajectory_curves_are_drawn_over_their_natural_range():
    """A bounded property fills its whole range (entropy / log N from 0 to just above 1), widened only
    to show a value outside it (a negative cosine); an unbounded one keeps matplotlib's range."""
    from vitscope.reporting.trajectory import natural_ylim

    assert natural_ylim("attention_entropy", np.array([0.997, 0.999])) == (0.0, 1.05)
    lo, hi = natural_ylim("heads_cosine", np.array([-0.06, 0.05, np.nan]))
    assert lo == pytest.approx(-0.06 - 0.02) and hi == 1.0
    assert natural_ylim("high_frequency", np.array([-3.5, -3.4])) is None
