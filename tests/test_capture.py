import pytest
import timm
import torch
from torch import nn

from vitscope.capture import TAPS, TapError, Taps, vit_info

CONFIGS = {
    "vit_cls": ("vit_tiny_patch16_224", dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4)),
    "vit_registers": ("vit_tiny_patch16_224", dict(img_size=24, patch_size=4, embed_dim=32, depth=2,
                                                   num_heads=2, reg_tokens=4)),
    "vit_no_cls": ("vit_tiny_patch16_224", dict(img_size=30, patch_size=6, embed_dim=32, depth=2, num_heads=4,
                                                class_token=False, global_pool="avg")),
    "beit_relpos": ("beit_base_patch16_224", dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4,
                                                  use_rel_pos_bias=True)),
    "beit_shared_relpos": ("beit_base_patch16_224", dict(img_size=32, patch_size=8, embed_dim=32, depth=2,
                                                         num_heads=4, use_shared_rel_pos_bias=True,
                                                         init_values=0.1)),
}


def capture_all(model, x):
    got = {}
    with Taps(model, TAPS, lambda l, t, v: got.__setitem__((l, t), v)) as taps:
        out = model.forward_features(x)
        taps.check()
    return got, out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_attn_at_v_equals_models_own_attention_output(name):
    arch, kw = CONFIGS[name]
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, **kw).eval()
    for blk in model.blocks:  # the default path is fused: probabilities never materialised
        blk.attn.fused_attn = True
    x = torch.randn(2, 3, kw["img_size"], kw["img_size"])
    with torch.no_grad():
        reference = model.forward_features(x)
        got, out = capture_all(model, x)
    info = vit_info(model)
    n = info.num_prefix_tokens + info.num_patches
    assert torch.allclose(out, reference, atol=1e-5), "hooks must not change the model's output"
    assert all(blk.attn.fused_attn for blk in model.blocks), "fused attention restored on exit"
    for layer in range(info.depth):
        attn = got[(layer, "attn")]
        assert attn.shape == (2, info.num_heads, n, n)
        assert torch.allclose(attn.sum(-1), torch.ones(2, info.num_heads, n), atol=1e-5)
        qkv = got[(layer, "qkv")].reshape(2, n, 3, info.num_heads, -1)
        v = qkv[:, :, 2].transpose(1, 2)
        assert torch.allclose((attn @ v).transpose(1, 2), got[(layer, "head_out")], atol=1e-5)
        # the residual after attention = block input + the attention branch
        blk = model.blocks[layer]
        branch = blk.attn.proj(got[(layer, "head_out")].flatten(2))
        gamma = getattr(blk, "gamma_1", None)
        if gamma is not None:
            branch = gamma * branch
        elif hasattr(blk, "ls1"):
            branch = blk.ls1(branch)
        assert torch.allclose(got[(layer, "block_in")] + branch, got[(layer, "attn_res")], atol=1e-5)
        assert torch.allclose(got[(layer, "ln1")], blk.norm1(got[(layer, "block_in")]), atol=1e-5)
        assert got[(layer, "fc1")].shape[-1] == blk.mlp.fc1.out_features
    # what leaves block 0 enters block 1
    assert torch.equal(got[(0, "block_out")], got[(1, "block_in")])


def test_vit_info_counts_prefix_tokens():
    _, kw = CONFIGS["vit_registers"]
    info = vit_info(timm.create_model("vit_tiny_patch16_224", pretrained=False, **kw))
    assert info.num_prefix_tokens == 5 and info.grid_size == (6, 6) and info.patch_size == (4, 4)


def test_only_requested_layers_and_taps():
    arch, kw = CONFIGS["vit_cls"]
    model = timm.create_model(arch, pretrained=False, **kw).eval()
    got = []
    with Taps(model, {"block_out"}, lambda l, t, v: got.append((l, t)), layers=[1]) as taps:
        model.forward_features(torch.randn(1, 3, 32, 32))
        taps.check()
    assert got == [(1, "block_out")]


def test_unknown_tap_is_refused():
    arch, kw = CONFIGS["vit_cls"]
    with pytest.raises(ValueError, match="Valid options"):
        Taps(timm.create_model(arch, pretrained=False, **kw), {"softmax"}, print)


def test_tap_that_never_fires_fails_loudly():
    arch, kw = CONFIGS["vit_cls"]
    model = timm.create_model(arch, pretrained=False, **kw).eval()

    class Skip(nn.Module):  # a block that bypasses its norm2 (so attn_res never fires)
        def __init__(self, blk):
            super().__init__()
            self.norm2, self.inner = blk.norm2, blk

        def forward(self, x):
            return x

    model.blocks[1] = Skip(model.blocks[1])
    with Taps(model, {"attn_res"}, lambda *a: None) as taps:
        model.forward_features(torch.randn(1, 3, 32, 32))
        with pytest.raises(TapError, match="block 1 never fired"):
            taps.check()


def test_non_vit_is_refused():
    with pytest.raises(TapError, match="not a timm ViT"):
        Taps(nn.Linear(2, 2), {"attn"}, print)
