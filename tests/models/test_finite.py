"""Non-finite weights are refused at load, naming the parameter and block; non-finite activations name the first block."""

import pytest
import torch
from vit_factories import tiny_vit

from vitscope.errors import VitscopeError
from vitscope.models import load
from vitscope.models.finite import check_finite_activations, check_finite_parameters, first_nonfinite_stage, stage_of


def test_stage_of_parameter_names():
    assert stage_of("blocks.11.attn.qkv.weight") == "block 11"
    assert stage_of("patch_embed.proj.weight") == "patch_embed"
    assert stage_of("cls_token") == "cls_token"


def test_nan_weight_in_a_checkpoint_names_parameter_and_block(tmp_path):
    model = tiny_vit()
    with torch.no_grad():
        model.blocks[1].attn.proj.weight[2, 3] = float("nan")
        model.blocks[1].mlp.fc1.bias[0] = float("inf")
    torch.save(model.state_dict(), tmp_path / "nan.pth")
    with pytest.raises(VitscopeError, match=r"1 NaN/inf value\(s\) in blocks\.1\.attn\.proj\.weight \(block 1\)"):
        load(str(tmp_path / "nan.pth"))  # the first in model order: attn before mlp
    check_finite_parameters(tiny_vit(), "fine")  # finite weights pass


def test_first_nonfinite_stage_is_the_block_that_makes_it():
    model = tiny_vit()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert first_nonfinite_stage(model, lambda: model.forward_features(x)) == "the final norm"
        model.blocks[1].mlp.fc2.bias[0] = float("inf")  # block 0 stays finite, block 1's output is not
        features = model.forward_features(x)
        assert first_nonfinite_stage(model, lambda: model.forward_features(x)) == "block 1"
        with pytest.raises(VitscopeError, match="first appear in the output of block 1"):
            check_finite_activations(model, features, lambda: model.forward_features(x))
    assert not model.blocks[1]._forward_hooks  # the hooks are removed again
