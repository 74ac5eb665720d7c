import os
from pathlib import Path

import pytest
import timm
import torch

import vitscope.models  # noqa: F401  (registers the small ViTs)

REPO = Path(__file__).resolve().parents[1]

# pytest-xdist runs one worker per core (pyproject's addopts): one intra-op thread each keeps the
# workers from fighting over the cores, and is faster for the tests' tiny tensors anyway.
torch.set_num_threads(1)


def shared_data() -> Path:
    """The project's ../shared/data, or $VITSCOPE_SHARED_DATA."""
    env = os.environ.get("VITSCOPE_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture
def tiny_vit():
    """A 3-block, 4-head ViT on 32 px images with patch 8 (4×4 grid), random weights."""
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                             embed_dim=32, depth=3, num_heads=4, num_classes=5).eval()
