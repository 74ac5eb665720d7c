import json
import subprocess
import sys

import numpy as np
import pytest

from cli_helpers import run_cli
from vitscope.api import analyze
from vitscope.data.synthetic import write_synthetic_folder

MODEL = "random:vit_tiny_patch4_32"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_synthetic_folder(tmp_path_factory.mktemp("imgs"), 12, size=32)


def test_analyze_writes_results_and_plots(tmp_path, images):
    res = analyze(MODEL, str(images), out=tmp_path, batch_size=5, workers=0, progress=False).results
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["data"]["images"] == 12 and saved["model"]["spec"] == MODEL
    assert saved["model"]["depth"] == 12 and saved["model"]["grid_size"] == [8, 8]
    assert set(saved["metrics"]) == {"attention", "similarity", "spectrum", "fourier"}
    assert len(saved["metrics"]["attention"]["nmi_per_head"]) == 12
    assert len(saved["metrics"]["fourier"]["delta_log_amplitude"]) == 13  # embedding + 12 blocks
    assert {"torch", "timm", "vitscope"} <= set(saved["versions"])
    for name in ("attention", "similarity", "spectrum", "fourier"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert res["metrics"]["attention"]["distance_unit"] == "pixels"


def test_batch_size_does_not_change_results(tmp_path, images):
    a = analyze(MODEL, str(images), out=tmp_path / "a", batch_size=12, workers=0, progress=False, plots=False).results
    b = analyze(MODEL, str(images), out=tmp_path / "b", batch_size=5, workers=0, progress=False, plots=False).results
    for metric in ("attention", "similarity", "spectrum", "fourier"):
        for key, va in a["metrics"][metric].items():
            if isinstance(va, list) and va and not isinstance(va[0], str):
                np.testing.assert_allclose(np.asarray(va, dtype=float), np.asarray(b["metrics"][metric][key], dtype=float),
                                           rtol=1e-4, atol=1e-5, err_msg=f"{metric}.{key}")


def test_metric_selection_and_plot_overlay(tmp_path, images, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "analyze", "--model", MODEL, "--data", str(images), "--out",
                           str(tmp_path / "r1"), "--metrics", "attention", "--workers", "0", "--no-progress")
    assert code in (0, None) and "12 images" in out
    assert set(json.loads((tmp_path / "r1" / "results.json").read_text())["metrics"]) == {"attention"}
    analyze("random:vit_small_patch4_32", str(images), out=tmp_path / "r2", metrics="attention", workers=0,
            progress=False, plots=False)
    code, out, _ = run_cli(monkeypatch, capsys, "plot", str(tmp_path / "r1"), str(tmp_path / "r2"),
                           "--out", str(tmp_path / "both"))
    assert (tmp_path / "both" / "attention.png").exists()


def test_compile_flag_gives_the_eager_results(tmp_path, images, monkeypatch, capsys):
    eager = analyze(MODEL, str(images), out=tmp_path / "e", metrics="attention,fourier", batch_size=5, workers=0,
                    progress=False, plots=False).results
    code, _, _ = run_cli(monkeypatch, capsys, "analyze", "--model", MODEL, "--data", str(images), "--out",
                         str(tmp_path / "c"), "--metrics", "attention,fourier", "--batch-size", "5", "--compile",
                         "--workers", "0", "--no-progress", "--no-plots")
    fast = json.loads((tmp_path / "c" / "results.json").read_text())
    assert code in (0, None) and fast["compiled"] is True and eager["compiled"] is False
    for metric, key in (("attention", "distance_per_head"), ("attention", "nmi_per_head"),
                        ("attention", "entropy_per_head"), ("fourier", "delta_log_amplitude")):
        np.testing.assert_allclose(fast["metrics"][metric][key], eager["metrics"][metric][key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("args, match", [
    (["--model", "nosuch:thing"], "unknown model spec"),
    (["--model", "random:resnet50"], "not a Vision Transformer"),
    (["--model", "random:vit_nonexistent_9"], "timm has no model"),
    (["--metrics", "attention,bogus"], "unknown metrics"),
    (["--precision", "fp8"], "unknown precision"),
    (["--batch-size", "0"], "batch size must be positive"),
    (["--images", "-3"], "must be positive"),
    (["--data", "/nonexistent/folder"], "does not exist"),
])
def test_bad_input_one_line_error_no_traceback(tmp_path, images, monkeypatch, capsys, args, match):
    base = {"--model": MODEL, "--data": str(images), "--out": str(tmp_path / "o")}
    base.update(zip(args[::2], args[1::2]))
    argv = ["analyze", "--workers", "0", "--no-progress"] + [x for kv in base.items() for x in kv]
    code, _, err = run_cli(monkeypatch, capsys, *argv)
    assert code == 2
    assert match in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_empty_dataset_of_only_bad_files(tmp_path, monkeypatch, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jpg").write_bytes(b"")
    code, _, err = run_cli(monkeypatch, capsys, "analyze", "--model", MODEL, "--data", str(tmp_path / "d"),
                           "--out", str(tmp_path / "o"), "--workers", "0", "--no-progress")
    assert code == 2 and "no readable images (1 skipped)" in err


def test_cuda_requested_without_gpu(tmp_path, images, monkeypatch, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, _, err = run_cli(monkeypatch, capsys, "analyze", "--model", MODEL, "--data", str(images),
                           "--out", str(tmp_path / "o"), "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in err


def test_python_dash_m_entry_point():
    import os

    r = subprocess.run([sys.executable, "-m", "vitscope", "analyze", "--help"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "400"})
    assert r.returncode == 0
    for fmt in ("MoCo v3", "SimMIM", "MAE", "DINO", "BEiT", "safetensors", "hf:"):
        assert fmt in r.stdout


def test_torchrun_two_processes_equal_one_process(tmp_path, images):
    """Two gloo processes analyse disjoint shards; summed states give the one-process result."""
    import os

    one = analyze(MODEL, str(images), out=tmp_path / "one", batch_size=4, workers=0, progress=False, plots=False).results
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", "29517", "-m", "vitscope", "analyze", "--model", MODEL,
                        "--data", str(images), "--out", str(tmp_path / "two"), "--batch-size", "4",
                        "--workers", "0", "--no-progress", "--no-plots", "--device", "cpu"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["processes"] == 2 and two["data"]["images"] == 12
    for metric in ("attention", "similarity", "fourier"):
        for key, va in one["metrics"][metric].items():
            if isinstance(va, list) and va and not isinstance(va[0], str):
                np.testing.assert_allclose(np.asarray(va, dtype=float),
                                           np.asarray(two["metrics"][metric][key], dtype=float),
                                           rtol=1e-4, atol=1e-5, err_msg=f"{metric}.{key}")
    np.testing.assert_allclose(one["metrics"]["spectrum"]["image_log_sv"],
                               two["metrics"]["spectrum"]["image_log_sv"], rtol=1e-4, atol=1e-5)


def test_run_metrics_announces_the_run_size_so_token_spectra_spread_over_it():
    import torch

    from vitscope.analysis import run_metrics
    from vitscope.data.images import Batch
    from vitscope.metrics.spectrum import SpectrumStats
    from vitscope.models import load
    from vitscope.taps import vit_info

    model = load(MODEL)
    x = torch.randn(12, 3, 32, 32)

    class Loader(list):
        num_images = 12

    loader = Loader(Batch(c, torch.zeros(len(c), dtype=torch.long), torch.arange(len(c)), []) for c in x.split(5))
    spread = SpectrumStats(vit_info(model), token_images=3)
    res = run_metrics(model, loader, [spread], device=torch.device("cpu"), progress=False)["metrics"]["spectrum"]
    assert res["token_images_used"] == 3 and res["token_image_choice"] == "evenly spaced over the run"
    first = SpectrumStats(vit_info(model), token_images=3)
    res = run_metrics(model, list(loader), [first], device=torch.device("cpu"), progress=False)["metrics"]["spectrum"]
    assert res["token_images_used"] == 3 and res["token_image_choice"] == "the first images of the run"
