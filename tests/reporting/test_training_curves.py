"""Training curves from pretraining logs: torn lines dropped, one panel per run, the CLI path."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vitscope.errors import VitscopeError
from vitscope.reporting.training import plot_training_curves
from vitscope.runlog import read_log

SRC = Path(__file__).resolve().parents[2] / "src"


def run_folder(root: Path, name: str, hybrid: bool = False) -> Path:
    folder = root / name
    folder.mkdir()
    recs = [{"step": s, "epoch": s / 10, "loss": 1.0 / s, **({"loss_cl": 2.0, "loss_mim": 0.5} if hybrid else {})}
            for s in range(1, 11)]
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"step": 11, "lo')
    return folder


def test_read_log_drops_a_torn_last_line_and_refuses_an_empty_log(tmp_path):
    recs = read_log(run_folder(tmp_path, "a"))
    assert [r["step"] for r in recs] == list(range(1, 11))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "log.jsonl").write_text("")
    with pytest.raises(VitscopeError, match="no records"):
        read_log(tmp_path / "empty")


def test_read_log_names_a_record_without_the_loss(tmp_path):
    folder = run_folder(tmp_path, "a")
    lines = (folder / "log.jsonl").read_text().splitlines()
    lines[3] = json.dumps({"step": 4, "epoch": 0.4})
    (folder / "log.jsonl").write_text("\n".join(lines))
    with pytest.raises(VitscopeError, match=r"a/log.jsonl line 4 lacks loss"):
        read_log(folder)


def test_one_panel_per_run_and_the_cli(tmp_path):
    a, b = run_folder(tmp_path, "moco"), run_folder(tmp_path, "hybrid", hybrid=True)
    png = plot_training_curves([("moco", read_log(a)), ("hybrid", read_log(b))], tmp_path / "c.png")
    w, h = Image.open(png).size
    assert w > 1.8 * h  # two panels side by side
    p = subprocess.run([sys.executable, "-m", "vitscope", "plot", str(a), str(b), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0 and (tmp_path / "o" / "training_loss.png").is_file(), p.stderr
