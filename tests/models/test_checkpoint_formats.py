"""Every official checkpoint layout, written as its training code saves it, loads back exactly."""

from __future__ import annotations

import argparse
import sys
import types
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models.beit import Beit, gen_relative_position_index
from timm.models.vision_transformer import Block
from vit_factories import WIDTH, assert_same_model, images, moco_projector, prefixed, randomize, tiny_beit, tiny_vit

from vitscope.errors import VitscopeError
from vitscope.models import load
from vitscope.models.converters import FORMATS, detect_format


def save(obj, path: Path) -> str:
    torch.save(obj, path)
    return str(path)


def mae_decoder(width: int = WIDTH, dec: int = 32) -> dict[str, torch.Tensor]:
    """The decoder keys MAE's ``MaskedAutoencoderViT`` saves next to the encoder."""
    block = Block(dec, 2, 2.0, qkv_bias=True).state_dict()
    return {
        "mask_token": torch.zeros(1, 1, dec), "decoder_embed.weight": torch.randn(dec, width),
        "decoder_embed.bias": torch.zeros(dec), "decoder_pos_embed": torch.zeros(1, 17, dec),
        **prefixed(block, "decoder_blocks.0."), "decoder_norm.weight": torch.ones(dec),
        "decoder_norm.bias": torch.zeros(dec), "decoder_pred.weight": torch.randn(8 * 8 * 3, dec),
        "decoder_pred.bias": torch.zeros(8 * 8 * 3),
    }


def test_moco_v3(tmp_path):
    # moco-v3's vit_small: width 384 with 12 heads, not the standard 6 (one block keeps it small).
    vit_small = dict(embed_dim=384, num_heads=12, depth=1, mlp_ratio=1.0)
    model, momentum = tiny_vit(**vit_small), tiny_vit(seed=5, **vit_small)
    sd = {
        **prefixed(model.state_dict(), "module.base_encoder."),
        **prefixed(moco_projector(384), "module.base_encoder.head."),
        **prefixed(momentum.state_dict(), "module.momentum_encoder."),
        **prefixed(moco_projector(384), "module.momentum_encoder.head."),
        **prefixed(moco_projector(16, 32, 16), "module.predictor."),
    }
    ckpt = {"epoch": 300, "arch": "vit_small", "state_dict": sd,
            "optimizer": {"state": {}, "param_groups": [{"lr": 1.5e-4, "params": [0, 1]}]},
            "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                       "growth_interval": 2000, "_growth_tracker": 0}}
    path = save(ckpt, tmp_path / "vit-s-300ep.pth.tar")
    assert detect_format(torch.load(path, weights_only=True)) == "moco_v3"
    loaded = load(path)
    assert loaded.blocks[0].attn.num_heads == 12
    assert_same_model(model, loaded)


def test_mae_pretrain_with_decoder_and_args(tmp_path):
    model = tiny_vit()
    ckpt = {"model": {**model.state_dict(), **mae_decoder()}, "optimizer": {"state": {}, "param_groups": []},
            "epoch": 799, "scaler": {"scale": 1024.0},
            "args": argparse.Namespace(model="mae_vit_base_patch16", mask_ratio=0.75, norm_pix_loss=True)}
    path = save(ckpt, tmp_path / "checkpoint-799.pth")
    loaded = load(path)
    assert_same_model(model, loaded)
    assert loaded.pretrained_cfg["mean"] == FORMATS["mae"].mean


def test_mae_finetuned_global_pool_head(tmp_path):
    model = tiny_vit(global_pool="avg", fc_norm=True, num_classes=10)
    assert "fc_norm.weight" in model.state_dict() and "norm.weight" not in model.state_dict()
    path = save({"model": model.state_dict()}, tmp_path / "mae_finetuned_vit_base.pth")
    loaded = load(path)
    assert loaded.num_classes == 10
    assert_same_model(model, loaded)


def test_dino_full_checkpoint_uses_teacher(tmp_path):
    teacher, student = tiny_vit(seed=1), tiny_vit(seed=2)
    dino_head = {"mlp.0.weight": torch.randn(32, WIDTH), "mlp.0.bias": torch.zeros(32),
                 "last_layer.weight_g": torch.ones(64, 1), "last_layer.weight_v": torch.randn(64, 32)}
    ckpt = {"student": {**prefixed(student.state_dict(), "module.backbone."), **prefixed(dino_head, "module.head.")},
            "teacher": {**prefixed(teacher.state_dict(), "backbone."), **prefixed(dino_head, "head.")},
            "optimizer": {"state": {}, "param_groups": []}, "epoch": 100,
            "args": argparse.Namespace(arch="vit_small", patch_size=16, out_dim=65536),
            "dino_loss": OrderedDict(center=torch.zeros(1, 64))}
    path = save(ckpt, tmp_path / "checkpoint.pth")
    assert_same_model(teacher, load(path))


def test_dino_released_backbone_is_a_plain_state_dict(tmp_path):
    model = tiny_vit()
    path = save(model.state_dict(), tmp_path / "dino_deitsmall16_pretrain.pth")
    assert_same_model(model, load(path))


def test_beit_pretrain_shared_rel_pos_bias(tmp_path):
    model = tiny_beit(use_abs_pos_emb=False, use_shared_rel_pos_bias=True, global_pool="token")
    sd = {**model.state_dict(), "mask_token": torch.zeros(1, 1, 64),
          "rel_pos_bias.relative_position_index": gen_relative_position_index((4, 4)),
          "lm_head.weight": torch.randn(8192, 64), "lm_head.bias": torch.zeros(8192)}
    path = save({"model": sd}, tmp_path / "beit_base_patch16_224_pt22k.pth")
    loaded = load(path)
    assert isinstance(loaded, Beit) and loaded.rel_pos_bias is not None
    assert loaded.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    assert_same_model(model, loaded)


def test_beit_finetuned_per_block_rel_pos_and_head(tmp_path):
    model = tiny_beit(use_abs_pos_emb=True, use_rel_pos_bias=True, num_classes=7)
    sd = {**model.state_dict(),
          **{f"blocks.{i}.attn.relative_position_index": gen_relative_position_index((4, 4)) for i in range(2)}}
    path = save({"model": sd}, tmp_path / "beit_base_patch16_224_pt22k_ft22kto1k.pth")
    loaded = load(path)
    assert loaded.num_classes == 7 and loaded.blocks[0].attn.relative_position_bias_table is not None
    assert_same_model(model, loaded)


@pytest.fixture
def yacs_cfgnode(monkeypatch):
    """A stand-in for ``yacs.config.CfgNode`` (a dict subclass), importable while saving only."""
    module = types.ModuleType("yacs.config")

    class CfgNode(dict):
        def __init__(self, init=None):
            super().__init__(init or {})
            self.__dict__["__immutable__"] = True

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    module.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, "yacs", types.ModuleType("yacs"))
    monkeypatch.setitem(sys.modules, "yacs.config", module)
    return CfgNode


def test_simmim_encoder_with_yacs_config(tmp_path, yacs_cfgnode, monkeypatch):
    model = tiny_beit(use_abs_pos_emb=False, use_shared_rel_pos_bias=True, global_pool="token")
    stride = 8
    sd = {**prefixed(model.state_dict(), "encoder."), "encoder.mask_token": torch.zeros(1, 1, 64),
          "encoder.rel_pos_bias.relative_position_index": gen_relative_position_index((4, 4)),
          "decoder.0.weight": torch.randn(stride ** 2 * 3, 64, 1, 1), "decoder.0.bias": torch.zeros(stride ** 2 * 3)}
    config = yacs_cfgnode({"MODEL": yacs_cfgnode({"TYPE": "vit", "VIT": yacs_cfgnode({"USE_SHARED_RPB": True})})})
    ckpt = {"model": sd, "optimizer": {"state": {}, "param_groups": []}, "lr_scheduler": {"last_epoch": 99},
            "max_accuracy": 0.0, "epoch": 99, "config": config}
    path = save(ckpt, tmp_path / "ckpt_epoch_99.pth")
    monkeypatch.delitem(sys.modules, "yacs.config")  # the reader must not need yacs
    loaded = load(path)
    assert isinstance(loaded, Beit)
    assert_same_model(model, loaded)


def test_timm_state_dict_with_registers_layer_scale_no_embed_class(tmp_path):
    model = tiny_vit(reg_tokens=4, no_embed_class=True, init_values=1e-5, class_token=True)
    path = save(model.state_dict(), tmp_path / "model.pth")
    loaded = load(path)
    assert loaded.num_prefix_tokens == 5
    assert_same_model(model, loaded)


def test_timm_state_dict_without_cls_token_or_final_norm(tmp_path):
    model = tiny_vit(class_token=False, global_pool="avg", fc_norm=False, final_norm=False)
    assert_same_model(model, load(save(model.state_dict(), tmp_path / "gap.pth")))


def test_safetensors(tmp_path):
    model = tiny_vit(qkv_bias=False, num_classes=5)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    assert_same_model(model, load(str(path)))


def test_vitscope_checkpoint(tmp_path):
    arch_kwargs = {"depth": 2, "embed_dim": 64, "num_heads": 4, "num_classes": 0}
    model = randomize(timm.create_model("vit_tiny_patch4_32", **arch_kwargs))
    ckpt = {"format": "vitscope-checkpoint", "version": 1, "arch": "vit_tiny_patch4_32",
            "arch_kwargs": arch_kwargs, "model": model.state_dict(),
            "optimizer": {"state": {}, "param_groups": []}, "momentum_encoder": tiny_vit().state_dict(),
            "epoch": 3, "rng": torch.get_rng_state(), "config": {"objective": "moco", "lr": 1e-3}}
    loaded = load(save(ckpt, tmp_path / "pretrain.pt"))
    assert loaded.pretrained_cfg["mean"] == model.pretrained_cfg["mean"]  # the arch's own (CIFAR) config
    assert_same_model(model, loaded)


def test_arch_decides_the_head_count(tmp_path):
    # timm's test_vit: width 64 with 2 heads, where the width rule would guess 1 head.
    model = randomize(timm.create_model("test_vit", num_classes=0))
    path = save(model.state_dict(), tmp_path / "test_vit.pth")
    loaded = load(path + "@test_vit")
    assert loaded.blocks[0].attn.num_heads == 2
    assert_same_model(model, loaded, size=160)
    guessed = load(path)
    assert guessed.blocks[0].attn.num_heads == 1
    x = images(size=160)
    with torch.no_grad():
        assert not torch.allclose(guessed.forward_features(x), model.forward_features(x), atol=1e-3)


def test_spec_records_source(tmp_path):
    path = save(tiny_vit().state_dict(), tmp_path / "m.pth")
    assert load(path).vitscope_spec == path


# ---------------------------------------------------------------- errors: one line, no traceback


def one_line_error(spec: str, match: str) -> str:
    with pytest.raises(VitscopeError, match=match) as info:
        load(spec)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive" * 10)
    one_line_error(str(path), "not a readable PyTorch checkpoint")


def test_truncated_file(tmp_path):
    path = Path(save(tiny_vit().state_dict(), tmp_path / "full.pth"))
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:2000])
    one_line_error(str(cut), "not a readable PyTorch checkpoint")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.touch()
    one_line_error(str(path), "empty file")


def test_corrupt_safetensors(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    one_line_error(str(path), "not a readable .safetensors")


class RunsCode:
    """Unpickling this calls ``os.mkdir(marker)``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.mkdir, (str(self.marker),)


def test_pickle_needing_arbitrary_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = save({"model": tiny_vit().state_dict(), "hook": RunsCode(marker)}, tmp_path / "evil.pth")
    message = one_line_error(path, "arbitrary Python objects")
    assert "mkdir" in message
    assert not marker.exists()


@dataclass
class TrainState:
    """A training script's own class, pickled next to the weights."""

    step: int


def test_pickle_of_custom_class_is_refused(tmp_path):
    path = save({"model": tiny_vit().state_dict(), "state": TrainState(3)}, tmp_path / "obj.pth")
    one_line_error(path, "arbitrary Python objects.*TrainState")


def test_resnet_state_dict_is_not_a_vit(tmp_path):
    sd = {"conv1.weight": torch.randn(8, 3, 7, 7), "bn1.weight": torch.ones(8), "bn1.bias": torch.zeros(8),
          "layer1.0.conv1.weight": torch.randn(8, 8, 3, 3), "fc.weight": torch.randn(10, 8), "fc.bias": torch.zeros(10)}
    one_line_error(save(sd, tmp_path / "resnet18.pth"), "not a ViT checkpoint")


def test_wrong_arch_is_a_shape_mismatch(tmp_path):
    path = save(tiny_vit().state_dict(), tmp_path / "m.pth")
    one_line_error(path + "@test_vit", "shape mismatch")


def test_unknown_arch(tmp_path):
    path = save(tiny_vit().state_dict(), tmp_path / "m.pth")
    one_line_error(path + "@vit_nonexistent_patch99", "timm has no model")


def test_nonstandard_width_asks_for_arch(tmp_path):
    path = save(tiny_vit(embed_dim=96, num_heads=3).state_dict(), tmp_path / "w96.pth")
    one_line_error(path, "PATH@ARCH")


def test_clip_style_vit_asks_for_arch(tmp_path):
    path = save(tiny_vit(pre_norm=True).state_dict(), tmp_path / "clip.pth")
    one_line_error(path, "pre-norm .*PATH@ARCH")


def test_missing_key_is_an_error(tmp_path):
    sd = tiny_vit().state_dict()
    del sd["blocks.1.attn.proj.bias"]
    one_line_error(save(sd, tmp_path / "m.pth"), r"missing keys: blocks\.1\.attn\.proj\.bias")


def test_unexpected_key_is_an_error(tmp_path):
    sd = {**tiny_vit().state_dict(), "blocks.0.adapter.weight": torch.zeros(4, 4)}
    one_line_error(save(sd, tmp_path / "m.pth"), r"unexpected keys: blocks\.0\.adapter\.weight")


def test_unknown_nesting(tmp_path):
    one_line_error(save({"weights": {"a": 1}, "epoch": 3}, tmp_path / "m.pth"), "unrecognised checkpoint layout")


def test_unknown_spec():
    one_line_error("no/such/file.pth", "unknown model spec")


def test_vitscope_checkpoint_without_weights(tmp_path):
    ckpt = {"format": "vitscope-checkpoint", "version": 1, "arch": "vit_tiny_patch4_32", "arch_kwargs": {}}
    one_line_error(save(ckpt, tmp_path / "empty.pt"), "no state dict of tensors under 'model'")


def test_vitscope_checkpoint_of_newer_version(tmp_path):
    ckpt = {"format": "vitscope-checkpoint", "version": 2, "arch": "vit_tiny_patch4_32", "arch_kwargs": {},
            "model": tiny_vit().state_dict()}
    one_line_error(save(ckpt, tmp_path / "v2.pt"), "version 2")


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "random.pt"
    import random

    path.write_bytes(b"\x00" + random.Random(0).randbytes(4095))  # neither "PK" (zip) nor 0x80 (pickle) first
    message = one_line_error(str(path), "is not a checkpoint: neither a torch.save file")
    assert "arbitrary" not in message
