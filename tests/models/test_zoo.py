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
from vitscope.models.zoo import add_entry, load_zoo, manifest, sha256, zoo_dir
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


def test_a_dino_run_loads_and_ships_as_its_teacher(tmp_path, monkeypatch):
    """DINO evaluates its teacher (official eval_knn.py / eval_linear.py: --checkpoint_key teacher)."""
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "imgs.npz", images=pixels)
    cfg = PretrainConfig(method="dino", model="vit_tiny_patch4_32", data=str(tmp_path / "imgs.npz"),
                         out=str(tmp_path / "run"), epochs=2, batch_size=8, device="cpu", tensorboard=False,
                         log_every=1, workers=0, model_kwargs=TINY, dino_out_dim=16, dino_hidden_dim=32,
                         dino_freeze_last_layer=0, dino_m=0.5)  # a fast teacher, far from the student
    train(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    teacher = {k.removeprefix("teacher.vit."): v for k, v in ckpt["objective"].items() if k.startswith("teacher.vit.")}
    assert teacher.keys() == ckpt["model"].keys()
    assert not all(torch.equal(teacher[k], v) for k, v in ckpt["model"].items())  # the student differs
    loaded = load(str(tmp_path / "run" / "checkpoint.pt")).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in teacher.items())
    monkeypatch.setenv("VITSCOPE_ZOO", str(tmp_path / "zoo"))
    add_entry("tiny-dino", tmp_path / "run", probe=None, hardware="test machine", budget="test", data="random pixels")
    shipped = load("zoo:tiny-dino").state_dict()
    assert all(torch.equal(shipped[k], v.half().float()) for k, v in teacher.items())


def test_finetuned_zoo_model_enters_the_zoo_as_its_encoder(run, zoo, tmp_path):
    """`vitscope finetune` of a zoo model, then `zoo add`: the entry names its source and fine-tuning
    recipe, and holds the fine-tuned encoder without its classifier head."""
    from PIL import Image

    from vitscope.cli import main

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(8):
            pixels = np.random.default_rng(10 * (cls == "b") + i).integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / cls / f"{i}.png")
    ft = tmp_path / "ft"
    with pytest.raises(SystemExit) as done:
        main(["finetune", "--model", "zoo:tiny-simmim", "--train-data", str(tmp_path / "imgs"), "--val-data",
              str(tmp_path / "imgs"), "--epochs", "2", "--batch-size", "4", "--warmup-epochs", "0", "--mixup", "0",
              "--cutmix", "0", "--randaug", "", "--workers", "0", "--device", "cpu", "--no-progress", "--out", str(ft)])
    assert done.value.code in (0, None)
    e = add_entry("tiny-simmim-ft", ft, probe=None, hardware="test machine", budget="test", data="16 random images")
    assert FIELDS <= set(e) and e["method"] == "simmim, fine-tuned" and e["source"] == "zoo:tiny-simmim"
    assert e["epochs"] == 2 and e["recipe"]["layer_decay"] == 0.65 and e["arch_kwargs"]["num_classes"] == 0
    history = json.loads((ft / "finetune.json").read_text())["history"]
    assert e["training"]["loss_first"] == history[0]["train_loss"] and e["training"]["wall_seconds"] > 0
    trained = torch.load(ft / "checkpoint.pt", weights_only=True)["model"]
    encoder = load("zoo:tiny-simmim-ft").state_dict()
    assert set(encoder) == {k for k in trained if not k.startswith("head.")}
    for k, v in encoder.items():
        assert torch.equal(v, trained[k].half().float()), k
    with pytest.raises(VitscopeError, match="fine-tuned zoo models only"):
        add_entry("x", _with_source(ft, tmp_path / "other", "random:vit_tiny_patch4_32"), probe=None,
                  hardware="", budget="", data="")


def _with_source(ft: Path, out: Path, source: str) -> Path:
    """A copy of fine-tuning run ``ft`` that records ``source`` as the model it fine-tuned."""
    out.mkdir()
    state = torch.load(ft / "checkpoint.pt", weights_only=True)
    torch.save({**state, "source_model": source}, out / "checkpoint.pt")
    (out / "finetune.json").write_text((ft / "finetune.json").read_text().replace("zoo:tiny-simmim", source))
    return out


def test_a_broken_probe_file_is_refused_before_anything_is_written(run, tmp_path):
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "probe.json").write_text('{"knn": {"accuracy": [0.5]}, "linear": {"cls": {}}}')
    with pytest.raises(VitscopeError, match=r"probe.json lacks knn.accuracy \(an object\), linear.cls.accuracy"):
        add_entry("x", run, probe=tmp_path / "probe", hardware="", budget="", data="", folder=tmp_path / "zoo")
    assert not (tmp_path / "zoo").exists()


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
    accuracy = e["training"]["val_accuracy"] if "source" in e else e["accuracy"]["knn_last_block"]
    assert e["bytes"] <= 12_000_000 and accuracy > 0.1  # above chance (10 classes)
    model = load(f"zoo:{name}")
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    assert all(torch.isfinite(p).all() for p in model.parameters())
