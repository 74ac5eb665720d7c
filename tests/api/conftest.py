"""Shared inputs of the API tests: a zoo model and a few of the CIFAR-10 test images that ship."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitscope.models.zoo import manifest, zoo_dir

DEMO = Path(__file__).resolve().parents[2] / "src" / "vitscope" / "data" / "demo"
QUERY, BANK = DEMO / "cifar10-test-query.npz", DEMO / "cifar10-test-bank.npz"
CL, MIM = "zoo:moco-cifar10", "zoo:simmim-cifar10"

if not all(s.removeprefix("zoo:") in manifest(zoo_dir()) for s in (CL, MIM)):
    pytest.skip("the zoo's MoCo v3 and SimMIM models do not ship in this checkout", allow_module_level=True)


@pytest.fixture(scope="session")
def demo() -> tuple[np.ndarray, np.ndarray]:
    """12 query images (uint8 [12, 32, 32, 3]) over all ten classes, and their labels."""
    with np.load(QUERY) as z:
        return z["images"][::17].copy(), z["labels"][::17].copy()


@pytest.fixture(scope="session")
def demo_npz(tmp_path_factory, demo) -> Path:
    """The same images in a .npz file, with labels and class names."""
    path = tmp_path_factory.mktemp("npz") / "demo.npz"
    with np.load(QUERY) as z:
        np.savez(path, images=demo[0], labels=demo[1], classes=z["classes"])
    return path


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory, demo) -> Path:
    """The same images as PNG files (lossless) in a flat folder, in the same order."""
    folder = tmp_path_factory.mktemp("folder")
    for i, img in enumerate(demo[0]):
        Image.fromarray(img).save(folder / f"{i:02d}.png")
    return folder
