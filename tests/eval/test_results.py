"""Result files: atomic JSON (a failed write leaves the old file), provenance, PNG plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vitscope.eval.plots import plot_per_block
from vitscope.results import provenance, write_json


def test_write_json_is_atomic(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"acc": np.array([0.5, 0.25]), "n": np.int64(3)})
    assert json.loads(path.read_text()) == {"acc": [0.5, 0.25], "n": 3}
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text())["n"] == 3  # the previous content survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_provenance_records_versions_and_fields():
    prov = provenance(model="random:x", seed=1)
    assert prov["model"] == "random:x" and prov["seed"] == 1
    assert {"vitscope", "torch", "timm", "numpy"} <= set(prov["versions"])


def test_plot_per_block_writes_png(tmp_path):
    plot_per_block({"cls": [0.1, 0.5, 0.9]}, tmp_path / "p.png", "t", reference={"final": 0.8})
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]
