import os
import sys
from pathlib import Path

import pytest
import timm

import vitscope.models  # noqa: F401

TINY = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=0)


@pytest.fixture
def tiny_vit():
    """A fresh depth-2, width-32 ViT on 16-px images (4×4 grid of 4-px patches)."""
    def make(seed: int = 0, **kw):
        import torch

        torch.manual_seed(seed)
        return timm.create_model("vit_tiny_patch4_32", **{**TINY, **kw})
    return make


class Cli:
    """How the subprocess tests run `vitscope pretrain` on a depth-2 width-32 ViT."""

    tiny = '{"img_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2}'  # --set model_kwargs=...
    src = Path(__file__).parents[2] / "src"
    python = sys.executable
    module = ["-m", "vitscope", "pretrain"]

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.src), "OMP_NUM_THREADS": "1"}


@pytest.fixture
def cli() -> Cli:
    return Cli()
