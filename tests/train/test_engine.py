"""Pieces of the loop: model specs, weight-decay groups, the run log's trimming on resume."""

import json

import pytest

from vitscope.errors import VitscopeError
from vitscope.train.encoder import ViTEncoder
from vitscope.train.engine import RunLog, build_vit, param_groups
from vitscope.train.simmim import SimMIM


def test_build_vit_fresh_with_kwargs_and_rejects_unknown():
    vit, arch = build_vit("random:vit_tiny_patch4_32", seed=0, kwargs={"depth": 1, "embed_dim": 32, "num_heads": 2})
    assert arch == "vit_tiny_patch4_32" and len(vit.blocks) == 1 and vit.training
    frozen, _ = build_vit("vit_tiny_patch4_32", seed=0, frozen_patch_embed=True,
                          kwargs={"depth": 1, "embed_dim": 32, "num_heads": 2})
    bound = (6 / (3 * 4 * 4 + 32)) ** 0.5  # MoCo v3: U(±√(6 / (3·p² + D)))
    w = frozen.patch_embed.proj.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound and frozen.patch_embed.proj.bias.abs().sum() == 0
    with pytest.raises(VitscopeError, match="no model"):
        build_vit("vit_does_not_exist", seed=0)


def test_build_vit_continues_a_checkpoint_named_path_at_arch(tmp_path, tiny_vit):
    """``PATH@ARCH`` is a checkpoint with its architecture, not a timm name (issue 19.6)."""
    import torch

    model = tiny_vit(img_size=32, embed_dim=192, depth=12, num_heads=3)  # vit_tiny_patch4_32 itself
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    vit, _ = build_vit(f"{tmp_path / 'plain.pt'}@vit_tiny_patch4_32", seed=1)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(vit.state_dict()[k], v, rtol=0, atol=0, msg=k)
    with pytest.raises(VitscopeError, match="does not fit"):
        build_vit(f"{tmp_path / 'plain.pt'}@vit_small_patch4_32", seed=1)


def test_no_weight_decay_on_biases_norms_tokens(tiny_vit):
    model = SimMIM(ViTEncoder(tiny_vit()))
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} >= {"mask_token", "encoder.vit.cls_token",
                                                           "encoder.vit.pos_embed", "encoder.vit.norm.weight"}
    assert all(p.ndim >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.05


def test_run_log_drops_lost_steps_and_torn_line(tmp_path):
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in (1, 2, 3, 4)] + ['{"step": 5, "lo']
    (tmp_path / "log.jsonl").write_text("\n".join(lines))
    RunLog(tmp_path, enabled=True, tensorboard=False, keep_until_step=2)
    assert [json.loads(ln)["step"] for ln in (tmp_path / "log.jsonl").read_text().splitlines()] == [1, 2]
