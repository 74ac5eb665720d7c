"""One code path: each command writes the files its API function writes, with the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli, without
from conftest import BANK, CL, MIM
from matplotlib.figure import Figure

import vitscope

# what differs between two runs of the same work: wall time, the clock, the command line, the folder
VOLATILE = {"seconds", "images_per_second", "created", "command", "out", "path", "checkpoint"}


def plain(obj):
    return without(obj, VOLATILE)


def same_files(cli: Path, api: Path, results: str) -> None:
    """The two folders hold the same files; the results file the same content, the figures the same bytes."""
    names = sorted(p.name for p in cli.iterdir())
    assert names == sorted(p.name for p in api.iterdir())
    assert plain(json.loads((cli / results).read_text())) == plain(json.loads((api / results).read_text()))
    for name in names:
        if name.endswith((".png", ".html")):
            assert (cli / name).read_bytes() == (api / name).read_bytes(), name


@pytest.fixture
def cli(monkeypatch, capsys):
    def run(*args: str) -> str:
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert code in (0, None), err
        return out
    return run


def test_analyze_compare_probe_and_report_write_what_the_api_writes(cli, tmp_path, demo_npz):
    data = str(demo_npz)
    cli("analyze", "--model", CL, "--data", data, "--out", str(tmp_path / "cli-a"), "--images", "10",
        "--batch-size", "5", "--workers", "0", "--no-progress")
    vitscope.analyze(CL, data, out=tmp_path / "api-a", images=10, batch_size=5, workers=0, progress=False)
    same_files(tmp_path / "cli-a", tmp_path / "api-a", "results.json")

    cli("compare", "--model", CL, "--model", MIM, "--data", data, "--out", str(tmp_path / "cli-c"), "--images", "8",
        "--batch-size", "4", "--layer-type", "block", "--layer-type", "fc1", "--workers", "0", "--no-progress")
    vitscope.compare(CL, MIM, data, out=tmp_path / "api-c", images=8, batch_size=4, layer_types=["block", "fc1"],
                     workers=0, progress=False)
    same_files(tmp_path / "cli-c", tmp_path / "api-c", "results.json")

    cli("probe", "--model", CL, "--train-data", str(BANK), "--val-data", data, "--out", str(tmp_path / "cli-p"),
        "--images", "40", "--epochs", "2", "--batch-size", "20", "--features", "cls", "--save-probe",
        "--no-cache-features", "--workers", "0", "--device", "cpu", "--no-progress")
    vitscope.probe(CL, BANK, data, out=tmp_path / "api-p", images=40, epochs=2, batch_size=20, features="cls",
                   save_probe=True, cache_features=False, workers=0, device="cpu", progress=False)
    same_files(tmp_path / "cli-p", tmp_path / "api-p", "probe.json")
    saved = json.loads((tmp_path / "api-p" / "probe.json").read_text())["saved_probe"]
    assert saved["path"] == str(tmp_path / "api-p" / "probe.pt")

    folders = [str(tmp_path / n) for n in ("cli-a", "cli-c", "cli-p")]
    cli("report", *folders, "--out", str(tmp_path / "cli.html"), "--family", "moco=cl", "--family", "simmim=mim")
    vitscope.report(folders, tmp_path / "api.html", families={"moco": "cl", "simmim": "mim"})
    assert (tmp_path / "cli.html").read_bytes() == (tmp_path / "api.html").read_bytes()


def test_inspect_writes_what_the_api_writes_and_reads_it_back(cli, tmp_path, demo_folder):
    image = str(demo_folder / "03.png")
    cli("inspect", "--model", CL, "--image", image, "--maps", "1", "--out", str(tmp_path / "cli"), "--device", "cpu",
        "--no-progress")
    ins = vitscope.inspect(CL, image, maps=1, out=tmp_path / "api", device="cpu", progress=False)
    same_files(tmp_path / "cli", tmp_path / "api", "inspect.json")
    assert list(ins.files) == ["attention_maps_1.png", "norm_maps_1.png", "tokens_before_after.png", "tsne.png",
                              "explorer.html"]
    assert isinstance(ins.plot(), Figure) and ins.results["data"]["names"] == ["03.png"]
    back = vitscope.read(tmp_path / "api")
    assert type(back) is vitscope.Inspection and back.results == ins.results and isinstance(back.plot("tsne.png"), Figure)
    back.save(tmp_path / "again")  # files read back are copied
    same_files(tmp_path / "api", tmp_path / "again", "inspect.json")
    assert set(back.to_frame()["quantity"]) == {"explained_variance_ratio", "tsne_kl_divergence"}


def test_signature_writes_what_the_api_writes(cli, tmp_path, demo):
    folders = {}
    for spec in ("zoo:hybrid-cifar10", CL, MIM):
        folders[spec] = tmp_path / spec.removeprefix("zoo:")
        vitscope.analyze(spec, demo[0][:6], out=folders[spec], metrics="attention", batch_size=6, workers=0,
                         progress=False, plots=False)
    cl, mim = str(folders[CL]), str(folders[MIM])
    out = cli("signature", str(folders["zoo:hybrid-cifar10"]), "--reference", f"{cl}=cl", "--reference", f"{mim}=mim",
              "--out", str(tmp_path / "cli-s"))
    assert "NMI of attention" in out
    api = vitscope.signature(folders["zoo:hybrid-cifar10"], cl=cl, mim=mim, out=tmp_path / "api-s")
    same_files(tmp_path / "cli-s", tmp_path / "api-s", "signature.json")
    assert vitscope.read(tmp_path / "cli-s").results == api.results


def test_finetune_writes_what_the_api_writes_and_leaves_a_model_in_memory_unchanged(cli, tmp_path, demo_npz):
    recipe = dict(images=40, epochs=1, batch_size=20, randaug="", mixup=0.0, cutmix=0.0, workers=0, device="cpu")
    cli("finetune", "--model", MIM, "--train-data", str(BANK), "--val-data", str(demo_npz),
        "--out", str(tmp_path / "cli-f"), "--images", "40", "--epochs", "1", "--batch-size", "20", "--randaug", "",
        "--mixup", "0", "--cutmix", "0", "--workers", "0", "--device", "cpu", "--no-progress")
    f = vitscope.finetune(MIM, BANK, demo_npz, out=tmp_path / "api-f", progress=False, **recipe)
    same_files(tmp_path / "cli-f", tmp_path / "api-f", "finetune.json")
    assert type(f) is vitscope.Finetune and f.folder == tmp_path / "api-f"
    assert vitscope.read(tmp_path / "api-f").results == f.results
    assert set(f.to_frame()["quantity"]) == {"train_loss", "val_accuracy"}

    net = vitscope.load(MIM)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    g = vitscope.finetune(net, BANK, demo_npz, out=tmp_path / "memory", progress=False, **recipe)
    after = net.state_dict()
    assert after.keys() == before.keys() and all(after[k].equal(v) for k, v in before.items())
    assert g.results["provenance"]["model"] == MIM  # a loaded model carries its spec
    assert g.results["history"] == f.results["history"]  # the same work as from the spec
    tuned = vitscope.load(str(tmp_path / "memory" / "checkpoint.pt"))
    assert tuned.num_classes == 10 and not tuned.head.weight.equal(torch.zeros_like(tuned.head.weight))
