"""End to end: `vitscope robustness` with a tiny random ViT (10-class head) on generated images."""

from __future__ import annotations

import json

import pytest
import torch
import typer
from robustness_helpers import CIFAR10, TINY
from typer.testing import CliRunner

from vitscope.commands.robustness import register
from vitscope.errors import VitscopeError
from vitscope.models.loader import load
from vitscope.perturbation.imagenet16 import IMAGENET16_CATEGORIES
from vitscope.perturbation.run import RobustnessConfig, run

MODEL = f"random:{TINY}"
MAP = ["airplane=0", "car=1", "bird=2", "cat=3"]


@pytest.fixture()
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command keeps `robustness` a named sub-command
    def _noop() -> None:
        pass

    return app


def test_cli_end_to_end(app, image_folder, cue_folder, tmp_path):
    (tmp_path / "map.txt").write_text("airplane=0\ncar=1\n")
    out = tmp_path / "out"
    args = ["robustness", "--model", MODEL, "--model", MODEL, "--data", str(image_folder),
            "--cue-conflict", str(cue_folder), "--out", str(out), "--class-map", str(tmp_path / "map.txt"),
            "--class-map", "bird=2", "--class-map", "cat=3", "--frequencies", "0,0.5,1", "--batch-size", "8",
            "--workers", "0", "--device", "cpu", "--seed", "3"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "shape bias" in res.output
    results = json.loads((out / "results.json").read_text())
    assert results["format"] == "vitscope-robustness"
    assert results["schema_version"] == 1 and "version" not in results  # one version field: the layout's
    prov = results["provenance"]
    assert prov["config"]["models"] == [MODEL, MODEL] and prov["config"]["seed"] == 3
    assert prov["config"]["data"] == str(image_folder) and {"torch", "timm", "vitscope"} <= set(prov["versions"])
    assert results["noise"]["frequencies"] == [0.0, 0.5, 1.0] and results["noise"]["strength"] == 0.1
    assert len(results["models"]) == 2
    for entry in results["models"]:
        nz = entry["noise"]
        assert nz["images"] == 20 and len(nz["accuracy"]) == len(nz["drop"]) == 3
        assert nz["drop"] == pytest.approx([nz["clean_accuracy"] - a for a in nz["accuracy"]])
        assert nz["noise_rms"] == pytest.approx([0.1] * 3, rel=1e-4)
        sb = entry["shape_bias"]
        assert sb["images"] == {"files": 11, "same_class_dropped": 2, "outside_map_dropped": 2, "subsampled_out": 0,
                                "unreadable": 0, "evaluated": 7}
        assert sb["category_map"] == {"source": "class-map",
                                      "map": {"airplane": [0], "bird": [2], "car": [1], "cat": [3]}}
        counts = [(v["shape"], v["texture"], v["other"]) for v in sb["per_class"].values()]
        assert sum(map(sum, counts)) == 7
        shape, texture = sum(c[0] for c in counts), sum(c[1] for c in counts)
        assert sb["shape_bias"] == (None if shape + texture == 0 else pytest.approx(shape / (shape + texture)))
        per_class = [v["shape_bias"] for v in sb["per_class"].values() if v["shape_bias"] is not None]
        assert sb["shape_bias_class_mean"] == (pytest.approx(sum(per_class) / len(per_class)) if per_class else None)
    # both runs load the same seeded random model and see the same noise: identical numbers
    assert results["models"][0]["noise"] == results["models"][1]["noise"]
    assert (out / "noise_drop.png").stat().st_size > 0 and (out / "shape_bias.png").stat().st_size > 0


def test_zero_strength_leaves_accuracy_unchanged(image_folder, tmp_path):
    cfg = RobustnessConfig(models=[MODEL], out=str(tmp_path / "o"), data=str(image_folder), noise_strength=0.0,
                           frequencies=[0.0, 0.3, 1.0], workers=0, batch_size=7)
    nz = run(cfg)["models"][0]["noise"]
    assert nz["accuracy"] == [nz["clean_accuracy"]] * 3 and nz["drop"] == [0.0] * 3


class Recorder(torch.nn.Module):
    """A 10-class 'classifier' that keeps every input it is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return x.flatten(1)[:, :10]


def test_pipeline_adds_band_noise_in_pixel_units(image_folder, tmp_path):
    from vitscope.data.images import open_dataset
    from vitscope.perturbation.noise import band_energy_fraction, band_mask
    from vitscope.perturbation.run import noise_accuracy

    std = [0.2, 0.25, 0.5]
    ds = open_dataset(str(image_folder), lambda im: torch.rand(3, 32, 32))
    cfg = RobustnessConfig(models=[MODEL], out="", frequencies=[0.2, 0.9], noise_strength=0.05, batch_size=8,
                           workers=0)
    rec = Recorder()
    nz = noise_accuracy(rec, ds, std, cfg, None, 10, torch.device("cpu"), "test")
    assert nz["images"] == 20 and len(rec.inputs) == 3 * 3  # 3 batches × (clean + 2 frequencies)
    for b in range(3):
        clean, *noisy = rec.inputs[3 * b: 3 * b + 3]
        for f, x in zip(cfg.frequencies, noisy):
            pixel_noise = (x - clean) * torch.tensor(std).view(1, 3, 1, 1)
            frac = band_energy_fraction(pixel_noise, band_mask(32, 32, f, 0.1))
            assert torch.allclose(frac, torch.ones_like(frac), atol=1e-6)
            rms = pixel_noise.pow(2).mean((1, 2, 3)).sqrt()
            assert torch.allclose(rms, torch.full_like(rms, 0.05), rtol=1e-4)


def test_probe_classes_align_labels_by_name(image_folder, cue_folder, tmp_path):
    model = load(MODEL)
    d = model.num_features
    order = list(reversed(CIFAR10))  # probe classes in another order than the data folders
    torch.manual_seed(0)
    probe = {"format": "vitscope-probe", "version": 1, "model": MODEL, "feature": "pooled", "layer": -1,
             "classes": order, "bn_mean": torch.zeros(d), "bn_var": torch.ones(d), "bn_eps": 1e-6,
             "weight": torch.randn(10, d), "bias": torch.zeros(10)}
    torch.save(probe, tmp_path / "probe.pt")
    cfg = RobustnessConfig(models=[MODEL], probes=[str(tmp_path / "probe.pt")], out=str(tmp_path / "o"),
                           data=str(image_folder), cue_conflict=str(cue_folder), frequencies=[0.5], workers=0,
                           class_map=["airplane=airplane", "car=automobile", "bird=bird", "cat=cat"])
    entry = run(cfg)["models"][0]
    assert entry["class_names"] == order
    assert entry["shape_bias"]["category_map"]["map"] == {"airplane": [9], "bird": [7], "car": [8], "cat": [6]}
    # clean accuracy by hand: probe logits on the same images, labels mapped by name

    from vitscope.data.images import open_dataset
    from vitscope.data.transforms import model_transform
    from vitscope.models.classifier import classifier

    clf, _ = classifier(model, tmp_path / "probe.pt")
    ds = open_dataset(str(image_folder), model_transform(model))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor([order.index(CIFAR10[ds[i][1]]) for i in range(len(ds))])
    with torch.no_grad():
        acc = (clf(x).argmax(1) == y).double().mean().item()
    assert entry["noise"]["clean_accuracy"] == pytest.approx(acc)


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "nothing to do"),
    (dict(data="/no/such/folder"), "does not exist"),
    (dict(data="DATA", probes=["none", "none"]), "one per model"),
    (dict(data="DATA", frequencies=[2.0]), "units of π"),
    (dict(data="DATA", noise_strength=-1.0), "≥ 0"),
    (dict(data="DATA", band_norm="l1"), "Valid options are"),
    (dict(data="DATA", band_width=0.01), "hold no frequency"),
    (dict(cue_conflict="CUE"), "pass --class-map"),
    (dict(cue_conflict="CUE", class_map=["ship=8"]), "unknown cue-conflict categories"),
    (dict(data="DATA", device="cuda:7" if not torch.cuda.is_available() else "nonsense"), "device"),
])
def test_bad_input_is_a_vitscope_error(kwargs, message, image_folder, cue_folder, tmp_path):
    kwargs = {k: (str(image_folder) if v == "DATA" else str(cue_folder) if v == "CUE" else v)
              for k, v in kwargs.items()}
    with pytest.raises(VitscopeError, match=message):
        run(RobustnessConfig(models=[MODEL], out=str(tmp_path / "o"), workers=0, **kwargs))


def test_cli_rejects_bad_frequencies(app, image_folder, tmp_path):
    res = CliRunner().invoke(app, ["robustness", "--model", MODEL, "--data", str(image_folder), "--out",
                                   str(tmp_path), "--frequencies", "0,half"])
    assert isinstance(res.exception, VitscopeError) and "comma-separated" in str(res.exception)


def test_unlabelled_or_out_of_range_labels_are_refused(tmp_path):
    import numpy as np
    from robustness_helpers import write_png

    rng = np.random.default_rng(0)
    for i in range(3):
        write_png(tmp_path / "flat" / f"{i}.png", rng)
    for c in range(11):
        write_png(tmp_path / "eleven" / f"c{c:02d}" / "0.png", rng)
    with pytest.raises(VitscopeError, match="needs labelled images"):
        run(RobustnessConfig(models=[MODEL], out=str(tmp_path / "o"), data=str(tmp_path / "flat"), workers=0))
    with pytest.raises(VitscopeError, match="label 10 out of range"):
        run(RobustnessConfig(models=[MODEL], out=str(tmp_path / "o"), data=str(tmp_path / "eleven"), workers=0))


def test_bad_class_map_fails_before_any_image_is_run(image_folder, cue_folder, tmp_path, monkeypatch):
    from vitscope.perturbation import run as run_module

    def never(*args, **kwargs):
        raise AssertionError("noise analysis ran before the class map was checked")

    monkeypatch.setattr(run_module, "noise_accuracy", never)
    cfg = RobustnessConfig(models=[MODEL], out=str(tmp_path / "o"), data=str(image_folder),
                           cue_conflict=str(cue_folder), class_map=["airplane=airplane"], workers=0)
    with pytest.raises(VitscopeError, match="no class names: give output indices"):
        run(cfg)


def test_imagenet_head_uses_the_16_class_mapping(cue_folder, tmp_path):
    from robustness_helpers import TINY_1K

    entry = run(RobustnessConfig(models=[f"random:{TINY_1K}"], out=str(tmp_path / "o"), cue_conflict=str(cue_folder),
                                 workers=0))["models"][0]
    sb = entry["shape_bias"]
    assert entry["num_classes"] == 1000 and sb["category_map"]["source"] == "imagenet16"
    assert sum(map(len, sb["category_map"]["map"].values())) == 207
    # knife is one of the 16: only the 2 same-class images are dropped
    counts = sb["images"]
    assert (counts["same_class_dropped"], counts["outside_map_dropped"], counts["evaluated"]) == (2, 0, 9)
    assert set(sb["per_class"]) == set(IMAGENET16_CATEGORIES)
    assert sum(v["shape"] + v["texture"] + v["other"] for v in sb["per_class"].values()) == 9


def test_real_cue_conflict_tar_end_to_end(tmp_path):
    from robustness_helpers import TINY_1K, shared_data

    data = shared_data()
    if data is None or not (data / "cue-conflict.tar").is_file():
        pytest.skip("../shared/data/cue-conflict.tar (or $VITSCOPE_SHARED_DATA) not present")
    sb = run(RobustnessConfig(models=[f"random:{TINY_1K}"], out=str(tmp_path / "o"), images=24, workers=0,
                              cue_conflict=str(data / "cue-conflict.tar")))["models"][0]["shape_bias"]
    assert sb["images"] == {"files": 1280, "same_class_dropped": 80, "outside_map_dropped": 0,
                            "subsampled_out": 1176, "unreadable": 0, "evaluated": 24}
