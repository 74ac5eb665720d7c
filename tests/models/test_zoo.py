"""The model zoo: entries written from a real pretraining run, loaded through ``zoo:NAME``, sha256 checked;
and the zoo that ships with the package."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vitscope.errors import VitscopeError
from vitscope.models import load
from vitscope.models.zoo import add_entry, load_zoo, manifest, sha256, training_summary, zoo_dir
from vitscope.train.config import PretrainConfig
from vitscope.train.engine import train

SRC = Path(__file__).resolve().parents[2] / "src"
TINY = {"img_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2}
FIELDS = {"file", "sha256", "bytes", "method", "arch", "arch_kwargs", "architecture", "data", "epochs", "budget",
          "hardware", "recipe", "training", "accuracy"}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real 2-epoch SimMIM run of a depth-2 width-32 ViT on 32 random 16-px images."""
    root = tmp_path_factory.mktemp("zoo-run")
    pixels = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
    np.savez(root / "imgs.npz", images=pixels)
    cfg = PretrainConfig(method="simmim", model="vit_tiny_patch4_32", data=str(root / "imgs.npz"),
                         out=str(root / "run"), epochs=2, batch_size=16, device="cpu", tensorboard=False,
                         log_every=1, workers=0, model_kwargs=TINY)
    train(cfg)
    return root / "run"


@pytest.fixture
def zoo(run, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VITSCOPE_ZOO", str(tmp_path / "zoo"))
    add_entry("tiny-simmim", run, probe=None, hardware="test machine", budget="test", data="random pixels")
    return tmp_path / "zoo"


def test_entry_round_trip_equals_the_trained_encoder(run, zoo):
    e = manifest()["tiny-simmim"]
    assert FIELDS <= set(e) and e["method"] == "simmim" and e["epochs"] == 2
    assert e["sha256"] == sha256(zoo / e["file"]) and e["bytes"] == (zoo / e["file"]).stat().st_size
    assert e["training"]["steps"] == 4 and e["training"]["wall_seconds"] >= 0  # formula: test below
    from_zoo, from_ckpt = load("zoo:tiny-simmim"), load(str(run / "checkpoint.pt"))
    assert from_zoo.vitscope_spec == "zoo:tiny-simmim" and len(from_zoo.blocks) == 2
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        a, b = from_zoo.forward_features(x), from_ckpt.forward_features(x)
    assert torch.allclose(a, b, atol=2e-2, rtol=2e-2)  # fp16 weights
    for k, v in from_ckpt.state_dict().items():  # every weight is the fp16 rounding of the trained one
        assert torch.equal(from_zoo.state_dict()[k], v.half().float()), k


def test_damaged_file_is_a_one_line_error(zoo):
    path = zoo / "tiny-simmim.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VitscopeError, match="damaged"):
        load_zoo("tiny-simmim")
    p = subprocess.run([sys.executable, "-m", "vitscope", "analyze", "--model", "zoo:tiny-simmim", "--data", "x",
                        "--out", str(zoo / "o")], capture_output=True, text=True,
                       env={"PYTHONPATH": str(SRC), "VITSCOPE_ZOO": str(zoo), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 2 and "damaged" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_unknown_or_missing_entries_name_the_problem(zoo):
    with pytest.raises(VitscopeError, match="Valid options are: tiny-simmim"):
        load("zoo:nope")
    (zoo / "tiny-simmim.safetensors").unlink()
    with pytest.raises(VitscopeError, match="missing"):
        load("zoo:tiny-simmim")


def test_wall_time_sums_logged_intervals_and_skips_resume_gaps(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"batch_size": 100}))
    recs = [{"step": 10, "img_per_s": 100.0, "loss": 2.0, "time": 0},  # 10 steps × 100 / 100 = 10 s
            {"step": 20, "img_per_s": 50.0, "loss": 1.5, "time": 9999}]  # 20 s, however long the gap
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert training_summary(tmp_path) == {"steps": 20, "wall_seconds": 30.0, "loss_first": 2.0, "loss_last": 1.5}


def test_zoo_command_lists_entries(zoo):
    p = subprocess.run([sys.executable, "-m", "vitscope", "zoo"], capture_output=True, text=True,
                       env={"PYTHONPATH": str(SRC), "VITSCOPE_ZOO": str(zoo), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0 and "zoo:tiny-simmim" in p.stdout and "test machine" in p.stdout


SHIPPED = manifest(zoo_dir())


@pytest.mark.skipif(not SHIPPED, reason="no zoo ships in this checkout")
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_zoo_entry_is_complete_and_loads(name, monkeypatch):
    monkeypatch.delenv("VITSCOPE_ZOO", raising=False)
    e = SHIPPED[name]
    assert FIELDS <= set(e)
    assert e["bytes"] <= 12_000_000 and e["accuracy"]["knn_last_block"] > 0.1  # above chance (10 classes)
    model = load(f"zoo:{name}")
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    assert all(torch.isfinite(p).all() for p in model.parameters())
