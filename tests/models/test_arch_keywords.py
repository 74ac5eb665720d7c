"""Architecture keywords: one grammar, NAME(key=value, ...), after random: and after PATH@."""

from __future__ import annotations

import pytest
import torch

from vitscope.errors import VitscopeError
from vitscope.models import load, parse_spec
from vitscope.models.loader import parse_arch


def test_parse_arch_reads_literal_keywords():
    assert parse_arch("vit_tiny_patch4_32") == ("vit_tiny_patch4_32", {})
    assert parse_arch("vit_tiny_patch4_32(depth=6, qkv_bias=False, img_size=(32, 32))") == (
        "vit_tiny_patch4_32", {"depth": 6, "qkv_bias": False, "img_size": (32, 32)})


@pytest.mark.parametrize("arch", ["vit_tiny_patch4_32(6)", "vit_tiny_patch4_32(depth=os.sep)", "vit_tiny_patch4_32(depth=",
                                  "(depth=6)", "vit_tiny_patch4_32(**kw)"])
def test_malformed_keywords_are_one_line_errors(arch):
    with pytest.raises(VitscopeError, match=r"expected NAME\(key=value, \.\.\.\)"):
        parse_spec(f"random:{arch}")


def test_random_takes_architecture_keywords():
    model = load("random:vit_tiny_patch4_32(depth=2, num_heads=2)")
    assert len(model.blocks) == 2 and model.blocks[0].attn.num_heads == 2
    assert model.vitscope_spec == "random:vit_tiny_patch4_32(depth=2, num_heads=2)"


def test_checkpoint_arch_takes_the_same_keywords(tmp_path):
    saved = load("random:vit_tiny_patch4_32(depth=2)")
    path = tmp_path / "two_blocks.pth"
    torch.save(saved.state_dict(), path)
    model = load(f"{path}@vit_tiny_patch4_32(depth=2)")
    assert len(model.blocks) == 2
    assert torch.equal(model.blocks[1].mlp.fc1.weight, saved.blocks[1].mlp.fc1.weight)
