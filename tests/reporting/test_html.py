import json
import stat

import pytest

from vitscope.reporting.html import build_report


def test_report_embeds_figures_and_per_block_table(tmp_path):
    run = tmp_path / "run<1>"
    run.mkdir()
    (run / "attention.png").write_bytes(b"\x89PNG fake bytes")
    metrics = {"attention": {"distance": [10.0, 20.0], "nmi": [0.5, 0.25], "nmi_std_over_heads": [0.1, 0.1],
                             "entropy": [1.0, 2.0]}}
    (run / "results.json").write_text(json.dumps({
        "kind": "vitscope-analysis", "model": {"spec": "random:vit<b>"}, "seed": 3,
        "data": {"spec": "imgs", "images": 7, "skipped": ["x.jpg: bad"]}, "metrics": metrics}))
    out = build_report([run], tmp_path / "r.html", title="T")
    page = out.read_text()
    assert "data:image/png;base64," in page and "random:vit&lt;b&gt;" in page and "run&lt;1&gt;" in page
    assert "imgs (7 images, 1 skipped)" in page
    assert "<td>2</td><td>20</td><td>0.25</td>" in page  # block 2's distance and NMI
    assert stat.S_IMODE(out.stat().st_mode) & 0o044  # readable by others, not mkstemp's 0600


def test_report_reads_compare_probe_and_robustness_layouts(tmp_path):
    """Regression: compare stores `skipped` as a count, probe nests provenance in probe.json."""
    cka = tmp_path / "cka"
    cka.mkdir()
    (cka / "results.json").write_text(json.dumps({
        "format": "vitscope-compare", "models": [{"spec": "a.pt"}, {"spec": "b.pt"}],
        "data": {"spec": "imgs", "images": 64, "skipped": 2}, "versions": {"torch": "x"}}))
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "probe.json").write_text(json.dumps({
        "provenance": {"model": "m.pt", "train_data": "tr", "val_data": "va", "seed": 0},
        "knn": {"accuracy": {"cls": [0.25, 0.5], "pooled": [0.4]}}}))
    rob = tmp_path / "rob"
    rob.mkdir()
    (rob / "results.json").write_text(json.dumps({
        "format": "vitscope-robustness", "provenance": {"config": {"models": ["r.pt"], "seed": 1}},
        "models": [{"spec": "r.pt"}]}))
    page = build_report([cka, probe, rob], tmp_path / "r.html").read_text()
    assert "a.pt, b.pt" in page and "imgs (64 images, 2 skipped)" in page
    assert "m.pt" in page and "<th>knn cls</th>" in page and "<td>2</td><td>0.5</td>" in page
    assert "vitscope-robustness" in page and "r.pt" in page


def test_report_command_refuses_non_results_folder(tmp_path, monkeypatch, capsys):
    import sys

    from vitscope.cli import main

    monkeypatch.setattr(sys, "argv", ["vitscope", "report", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2 and "not a results folder" in capsys.readouterr().err
