"""`vitscope inspect` end to end on a random 32 px ViT: files, numbers, bad input."""

import json

import numpy as np
import pytest
import torch

from cli_helpers import run_cli
from inspect_helpers import MODEL, explorer_data
from vitscope.analysis import run_metrics
from vitscope.data import make_loader, model_transform, open_dataset
from vitscope.metrics.attention import AttentionStats
from vitscope.models import load
from vitscope.taps import vit_info


def test_inspect_writes_every_figure_and_inspect_json(inspected):
    out, res, images = inspected
    saved = json.loads((out / "inspect.json").read_text())
    assert saved["kind"] == "vitscope-inspect" and saved["model"] == MODEL and saved["grid"] == [8, 8]
    assert saved["queries"] == [[4, 4], [0, 7]]
    assert not (out / "attention_maps_2.png").exists() and not (out / "norm_maps_2.png").exists()  # --maps 1
    assert saved["norm_maps"]["outliers"].startswith("patch token norm > 4 x the median")
    for name in ("attention_maps_1.png", "norm_maps_1.png", "attention_maps_1_heads_q1.png",
                 "attention_maps_1_heads_q2.png", "tokens_before_after.png", "tsne.png", "explorer.html"):
        assert name in saved["files"] and (out / name).stat().st_size > 2000, name
    assert saved["tsne"]["tokens"] == 2 * 64 and saved["tsne"]["perplexity"] == 30
    assert saved["tokens_before_after"]["block"] == 12 and saved["explorer"]["bytes"] == (out / "explorer.html").stat().st_size
    assert saved["data"]["names"] == [p.name for p in images] and saved["data"]["images"] == 2


def test_explorer_numbers_equal_analyze_on_the_same_image(inspected):
    """The explorer's per-head NMI and distance of an image are what `analyze` computes for it alone."""
    out, _, images = inspected
    data = explorer_data(out / "explorer.html")
    assert data["grid"] == [8, 8] and data["depth"] == 12 and data["head_slots"] == 4 and len(data["images"]) == 2
    model = load(MODEL)
    folder = images[0].parent
    ds = open_dataset(str(folder), model_transform(model))
    idx = [p.name for p in sorted(folder.rglob("*"))].index(images[0].name)
    loader = make_loader(torch.utils.data.Subset(ds, [idx]), 1, workers=0)
    got = run_metrics(model, loader, [AttentionStats(vit_info(model))], device=torch.device("cpu"), progress=False)
    att = got["metrics"]["attention"]
    nmi, dist = np.asarray(data["images"][0]["nmi"]), np.asarray(data["images"][0]["distance"])
    np.testing.assert_allclose(nmi[:, :3], att["nmi_per_head"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(nmi[:, 3], att["nmi"], rtol=1e-4, atol=1e-6)  # mean slot = mean over heads
    np.testing.assert_allclose(dist[:, :3], att["distance_per_head"], rtol=1e-4)
    raw = np.frombuffer(__import__("base64").b64decode(data["images"][0]["attention"]), dtype=np.uint8)
    assert raw.size == 12 * 4 * 64 * 64 and raw.reshape(-1, 64).max(1).min() == 255  # every row peaks at 255


def test_nmi_kde_from_results_files(tmp_path, monkeypatch, capsys):
    for name, heads in (("a", [[0.1, 0.2, 0.3], [0.2, 0.25, 0.9]]), ("b", [[0.5, 0.5, 0.5], [0.4, 0.45, 0.5]])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({
            "kind": "vitscope-analysis", "model": {"spec": name},
            "metrics": {"attention": {"nmi_per_head": heads}}}))
    code, out, err = run_cli(monkeypatch, capsys, "inspect", "--results", str(tmp_path / "a"), "--results",
                             str(tmp_path / "b" / "results.json"), "--label", "MoCo", "--out", str(tmp_path / "o"))
    assert code in (0, None), err
    saved = json.loads((tmp_path / "o" / "inspect.json").read_text())["nmi_kde"]
    assert saved["block"] == 2 and [r["nmi_per_head"] for r in saved["runs"]] == [[0.2, 0.25, 0.9], [0.4, 0.45, 0.5]]
    assert [r["label"] for r in saved["runs"]] == ["MoCo", "b"]
    assert (tmp_path / "o" / "nmi_kde.png").stat().st_size > 2000
    code, _, err = run_cli(monkeypatch, capsys, "inspect", "--results", str(tmp_path / "a"), "--block", "3",
                           "--out", str(tmp_path / "o2"))
    assert code == 2 and err.strip() == "vitscope: error: --block 3 is outside 1…2 (this model has 2 blocks)"


@pytest.mark.parametrize("case", ["unreadable", "query", "both", "block", "class"])
def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys, photo_folder, case):
    good = str(sorted(photo_folder.rglob("*.png"))[0])
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    args = {"unreadable": ["--image", good, "--image", str(bad)],
            "query": ["--image", good, "--query", "8,2"],
            "both": ["--image", good, "--data", str(photo_folder)],
            "block": ["--image", good, "--block", "0"],
            "class": ["--data", str(photo_folder), "--class", "hexagon"]}[case]
    code, _, err = run_cli(monkeypatch, capsys, "inspect", "--model", MODEL, "--out", str(tmp_path / "o"),
                           "--device", "cpu", *args)
    want = {"unreadable": f"cannot read image '{bad}'", "query": "query 8,2 is outside the 8×8 patch grid",
            "both": "either as --image", "block": "--block 0 is outside 1…12", "class": "no class folder ['hexagon']"}
    assert code == 2 and len(err.strip().splitlines()) == 1 and want[case] in err, err


def test_folder_choice_spreads_over_three_classes(photo_folder):
    from vitscope.views.collect import from_data

    imgs = from_data(photo_folder, load(MODEL), 7, seed=0)
    # 4 class folders (circle, square, ...): the first three sorted, drawn round-robin: 3 + 2 + 2
    assert len(imgs.names) == 7 and len(set(imgs.classes)) == 3
    assert sorted(imgs.classes.count(c) for c in set(imgs.classes)) == [2, 2, 3]
    assert imgs.classes == sorted(imgs.classes, key=imgs.classes.index)  # grouped by class
    again = from_data(photo_folder, load(MODEL), 7, seed=0)
    assert again.names == imgs.names and tuple(imgs.tensors.shape) == (7, 3, 32, 32)


def test_distinct_labels_use_the_fewest_folders_that_tell_files_apart(tmp_path):
    from vitscope.views.collect import distinct_labels

    cat, ship, deep = tmp_path / "cat" / "0000.jpg", tmp_path / "ship" / "0000.jpg", tmp_path / "a" / "cat" / "0000.jpg"
    assert distinct_labels([cat, ship]) == ["cat/0000.jpg", "ship/0000.jpg"]
    assert distinct_labels([cat, tmp_path / "cat" / "0001.jpg"]) == ["0000.jpg", "0001.jpg"]
    assert distinct_labels([cat, deep]) == [f"{tmp_path.name}/cat/0000.jpg", "a/cat/0000.jpg"]
    assert distinct_labels([cat, cat]) == ["0000.jpg", "0000.jpg"]  # one file twice: one label


def test_same_file_name_in_two_folders_gets_two_labels(tmp_path, photo_folder, monkeypatch):
    """cat/0000.png and ship/0000.png: distinct names in inspect.json, the token figure and the explorer menu."""
    import shutil

    from vitscope.api import inspect
    from vitscope.views import run

    source = sorted(photo_folder.rglob("*.png"))[:2]
    images = []
    for folder, src in zip(("cat", "ship"), source):
        (tmp_path / folder).mkdir()
        images.append(shutil.copy(src, tmp_path / folder / "0000.png"))
    legends: dict[str, list[str]] = {}
    save = run.save_figure

    def spy(fig, path, **kwargs):  # the legend of every figure inspect draws, by file name
        legends[path.name] = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        return save(fig, path, **kwargs)

    monkeypatch.setattr(run, "save_figure", spy)
    res = inspect(MODEL, images, out=tmp_path / "out", maps=1, device="cpu").results
    want = ["cat/0000.png", "ship/0000.png"]
    assert res["data"]["names"] == want and res["tokens_before_after"]["images"] == want
    assert legends["tokens_before_after.png"] == [f"{n}: {when}" for n in want for when in ("before", "after")]
    assert [im["name"] for im in explorer_data(tmp_path / "out" / "explorer.html")["images"]] == want
