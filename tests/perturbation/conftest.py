"""Fixtures for the robustness tests: tiny generated image sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from robustness_helpers import CIFAR10, STIMULI, write_png


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    """10 CIFAR-named class folders, 2 random 32 px images each."""
    rng = np.random.default_rng(0)
    for c in CIFAR10:
        for i in range(2):
            write_png(tmp_path / "data" / c / f"{i}.png", rng)
    return tmp_path / "data"


@pytest.fixture()
def cue_folder(tmp_path: Path) -> Path:
    """A tiny cue-conflict set in the distributed layout (64 px PNGs)."""
    rng = np.random.default_rng(1)
    root = tmp_path / "cue" / "style-transfer-preprocessed-512"
    for s, i, t, j in STIMULI:
        write_png(root / s / f"{s}{i}-{t}{j}.png", rng, size=64)
    return tmp_path / "cue"
