"""Fine-tuning pieces: layer-decay lrs, drop path, block re-init, checkpoint format and resume."""

from __future__ import annotations

import timm
import torch
import pytest
from timm.layers import DropPath
from torch import nn

from vitscope.data import model_transform
from vitscope.errors import VitscopeError
from vitscope.eval import finetune as ft
from vitscope.eval.labelled import open_labelled
from vitscope.eval.reinit import parse_reinit, reinit_blocks


def test_layer_decay_lrs_hand_computed(tiny_vit):
    # depth 3, d = 0.5, lr = 1: embeddings d^4, block i d^(3-i), final norm and head d^0.
    groups = ft.layer_decay_param_groups(tiny_vit, lr=1.0, weight_decay=0.05, layer_decay=0.5)
    lr_of, wd_of = {}, {}
    for g in groups:
        for p in g["params"]:
            lr_of[id(p)], wd_of[id(p)] = g["lr"], g["weight_decay"]
    names = dict(tiny_vit.named_parameters())
    expected_lr = {
        "cls_token": 0.0625, "pos_embed": 0.0625, "patch_embed.proj.weight": 0.0625,
        "blocks.0.attn.qkv.weight": 0.125, "blocks.1.mlp.fc1.bias": 0.25, "blocks.2.norm1.weight": 0.5,
        "norm.weight": 1.0, "head.weight": 1.0, "head.bias": 1.0,
    }
    for name, lr in expected_lr.items():
        assert lr_of[id(names[name])] == pytest.approx(lr), name
    assert len(lr_of) == len(names)  # every parameter is optimised
    assert wd_of[id(names["blocks.0.attn.qkv.weight"])] == 0.05 and wd_of[id(names["head.weight"])] == 0.05
    for name in ("pos_embed", "cls_token", "blocks.0.attn.qkv.bias", "norm.weight"):
        assert wd_of[id(names[name])] == 0.0, name


def test_drop_path_rates_increase_linearly(tiny_vit):
    ft.set_drop_path(tiny_vit, 0.2)
    rates = [b.drop_path1.drop_prob if isinstance(b.drop_path1, DropPath) else 0.0 for b in tiny_vit.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2])
    assert isinstance(tiny_vit.blocks[0].drop_path2, nn.Identity)


def test_parse_reinit():
    assert parse_reinit("first:2", 12) == [0, 1]
    assert parse_reinit("last:3", 12) == [9, 10, 11]
    assert parse_reinit("", 12) == [] and parse_reinit("first:0", 12) == []
    for bad in ("middle:2", "first:13", "last:-1", "first", "last:x"):
        with pytest.raises(VitscopeError, match="Valid options"):
            parse_reinit(bad, 12)


@pytest.mark.parametrize("spec,chosen", [("first:1", {0}), ("last:2", {1, 2})])
def test_reinit_changes_exactly_the_chosen_blocks(tiny_vit, spec, chosen):
    with torch.no_grad():  # make every tensor distinguishable from any fresh init
        for p in tiny_vit.parameters():
            p.add_(torch.randn_like(p) + 1.0)
    before = {k: v.clone() for k, v in tiny_vit.state_dict().items()}
    reinit_blocks(tiny_vit, parse_reinit(spec, 3), seed=0)
    after = tiny_vit.state_dict()
    for name, value in before.items():
        in_chosen = name.startswith("blocks.") and int(name.split(".")[1]) in chosen
        assert torch.equal(value, after[name]) != in_chosen, name
    # timm's init: Linear weights trunc-normal std 0.02, biases 0, LayerNorm weight 1 / bias 0
    b = tiny_vit.blocks[min(chosen)]
    assert torch.all(b.attn.qkv.bias == 0) and torch.all(b.norm1.weight == 1) and torch.all(b.norm2.bias == 0)
    assert 0.015 < b.mlp.fc1.weight.std() < 0.025  # timm truncates at ±2 absolute, not ±2 std


def test_reinit_is_seeded(tiny_vit):
    other = timm.create_model("vit_evaltest_tiny")
    other.load_state_dict(tiny_vit.state_dict())
    reinit_blocks(tiny_vit, [1], seed=5)
    reinit_blocks(other, [1], seed=5)
    for (k, a), b in zip(tiny_vit.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k


def _sets(model, folders, cfg):
    train = open_labelled(str(folders[0]), ft.train_transform(model, cfg))
    val = open_labelled(str(folders[1]), model_transform(model))
    return train, val


def test_finetune_checkpoint_loads_back_and_resume_is_exact(tiny_vit, class_folders, tmp_path, monkeypatch):
    cfg = ft.FinetuneConfig(epochs=2, batch_size=6, warmup_epochs=1, drop_path=0.1, reinit="last:1", lr=1e-3)
    base = {k: v.clone() for k, v in tiny_vit.state_dict().items()}
    train, val = _sets(tiny_vit, class_folders, cfg)
    res = ft.finetune(tiny_vit, train, val, cfg, tmp_path / "a", model_spec="random:tiny",
                      device=torch.device("cpu"), workers=0)
    assert res["reinit_blocks"] == [2] and len(res["history"]) == 2
    assert res["accuracy"] == res["history"][-1]["val_accuracy"]

    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert state["format"] == "vitscope-checkpoint" and state["version"] == 1 and state["epoch"] == 2
    rebuilt = timm.create_model(state["arch"], **state["arch_kwargs"])
    rebuilt.load_state_dict(state["model"])
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(rebuilt.eval()(x), tiny_vit.eval()(x))
    assert rebuilt.num_classes == 2

    # interrupted after the first epoch's checkpoint, then resumed: same weights as uninterrupted
    model_b = timm.create_model("vit_evaltest_tiny")
    model_b.load_state_dict(base)
    real_save, calls = ft.atomic_torch_save, []

    def crash_on_second(obj, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_save(obj, path)

    monkeypatch.setattr(ft, "atomic_torch_save", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(model_b, *_sets(model_b, class_folders, cfg), cfg, tmp_path / "b", model_spec="random:tiny",
                    device=torch.device("cpu"), workers=0)
    monkeypatch.setattr(ft, "atomic_torch_save", real_save)
    with pytest.raises(VitscopeError, match="--resume"):
        ft.finetune(model_b, *_sets(model_b, class_folders, cfg), cfg, tmp_path / "b", model_spec="random:tiny",
                    device=torch.device("cpu"), workers=0)
    model_c = timm.create_model("vit_evaltest_tiny")
    model_c.load_state_dict(base)
    res_c = ft.finetune(model_c, *_sets(model_c, class_folders, cfg), cfg, tmp_path / "b",
                        model_spec="random:tiny", device=torch.device("cpu"), workers=0, resume=True)
    for (k, a), b in zip(tiny_vit.state_dict().items(), model_c.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    assert res_c["history"] == res["history"]


def test_bad_finetune_options():
    with pytest.raises(VitscopeError):
        ft.FinetuneConfig(layer_decay=0.0)
    with pytest.raises(VitscopeError):
        ft.FinetuneConfig(drop_path=1.0)
