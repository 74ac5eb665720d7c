import pytest
from inspect_helpers import MODEL

from vitscope.data.synthetic import write_synthetic_folder


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """12 synthetic 32 px images in 4 shape-class folders."""
    return write_synthetic_folder(tmp_path_factory.mktemp("inspect-imgs"), 12, size=32)


@pytest.fixture(scope="session")
def inspected(tmp_path_factory, photo_folder):
    """One `vitscope inspect` run on two images (with per-head maps), shared by the tests."""
    from vitscope.api import inspect

    out = tmp_path_factory.mktemp("inspected")
    images = sorted(photo_folder.rglob("*.png"))[:2]
    res = inspect(MODEL, images, out=out, heads=True, maps=1, query=["4,4", "0,7"], device="cpu").results
    return out, res, images
