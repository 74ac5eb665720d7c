import json
import stat

import pytest

from vitscope.report.html import build_report


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


def test_report_command_refuses_non_results_folder(tmp_path, monkeypatch, capsys):
    import sys

    from vitscope.cli import main

    monkeypatch.setattr(sys, "argv", ["vitscope", "report", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2 and "not a results folder" in capsys.readouterr().err
