import pytest
import timm
import torch
from torch import nn

from vitscope.taps import TAPS, TapError, Taps, vit_info, window_tokens_to_grid, window_valid

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


@pytest.mark.parametrize("name", ["vit_cls", "vit_no_cls", "beit_relpos", "beit_shared_relpos"])
def test_attn_logits_are_the_softmax_input_and_fire_first(name):
    """``attn_logits`` is what the softmax turned into ``attn`` (scale, BEiT's position bias
    included), handed over right before it, and the model's output does not change."""
    arch, kw = CONFIGS[name]
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, **kw).eval()
    x = torch.randn(2, 3, kw["img_size"], kw["img_size"])
    order, got = [], {}

    def keep(layer, tap, v):
        order.append((layer, tap))
        got[(layer, tap)] = v

    with torch.no_grad():
        reference = model.forward_features(x)
        with Taps(model, {"attn", "attn_logits"}, keep) as taps:
            out = model.forward_features(x)
            taps.check()
        assert torch.allclose(out, reference, atol=1e-5)
        assert order == [(i, t) for i in range(len(model.blocks)) for t in ("attn_logits", "attn")]
        for i in range(len(model.blocks)):
            assert torch.allclose(got[(i, "attn_logits")].softmax(-1), got[(i, "attn")], atol=1e-6)
        # the mode is gone after the block: a softmax outside attention is not recorded
        with Taps(model, {"attn_logits"}, keep):
            model.forward_features(x)
            torch.randn(1, 1, 3, 3).softmax(-1)


def test_attn_logits_skipped_where_the_probabilities_are_changed_after_softmax():
    """A model that rescales the probabilities between softmax and ``attn_drop`` (as talking
    heads do) gets no ``attn_logits``, and ``check()`` does not require them."""
    arch, kw = CONFIGS["vit_cls"]
    model = timm.create_model(arch, pretrained=False, **kw).eval()

    class Rescale(nn.Module):  # attn_drop whose input is no longer the softmax's output
        def forward(self, a):
            return a

    for blk in model.blocks:
        blk.attn.attn_drop = Rescale()
        blk.attn.attn_drop.register_forward_pre_hook(lambda _m, args: (args[0] * 1.0,))
    fired = []
    with Taps(model, {"attn", "attn_logits"}, lambda l, t, v: fired.append(t)) as taps, torch.no_grad():
        model.forward_features(torch.randn(1, 3, 32, 32))
        taps.check()
    assert fired == ["attn"] * len(model.blocks)


def test_softmax_spy_leaves_with_a_failing_forward():
    arch, kw = CONFIGS["vit_cls"]
    model = timm.create_model(arch, pretrained=False, **kw).eval()
    from torch.overrides import _get_current_function_mode_stack

    with Taps(model, {"attn_logits"}, lambda *a: None), pytest.raises(RuntimeError):
        model.forward_features(torch.randn(1, 5, 32, 32))  # wrong channels: patch_embed fails
    blk = model.blocks[0]
    with Taps(model, {"attn_logits"}, lambda *a: None), pytest.raises(RuntimeError):
        blk(torch.randn(1, 17, 31))  # wrong width: fails inside the attention module
    assert not _get_current_function_mode_stack()


def test_cait_self_attention_taps_carry_no_prefix_and_softmax_probabilities():
    """CaiT's self-attention blocks see the patches only; its talking heads mix the heads after the
    softmax (``proj_w``), and ``attn`` is the softmax's output: rows of probabilities whose mix,
    applied to ``v``, is the model's own per-head output."""
    torch.manual_seed(0)
    model = timm.create_model("cait_xxs24_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                              depth=2, num_heads=4, depth_token_only=2).eval()
    info = vit_info(model)
    assert (info.num_prefix_tokens, info.depth, info.class_attention_depth) == (0, 2, 2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model.forward_features(x)
        got, out = capture_all(model, x)
    assert torch.allclose(out, reference, atol=1e-6)
    assert {layer for layer, _ in got} == {0, 1}, "class-attention blocks only when asked for"
    n = 16
    for layer, blk in enumerate(model.blocks):
        attn = got[(layer, "attn")]
        assert attn.shape == (2, 4, n, n) and attn.min() >= 0
        assert torch.allclose(attn.sum(-1), torch.ones(2, 4, n), atol=1e-6)
        assert torch.allclose(got[(layer, "attn_logits")].softmax(-1), attn, atol=1e-6)
        mixed = blk.attn.proj_w(attn.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        v = got[(layer, "qkv")].reshape(2, n, 3, 4, -1)[:, :, 2].transpose(1, 2)
        assert torch.allclose((mixed @ v).transpose(1, 2), got[(layer, "head_out")], atol=1e-5)
        branch = blk.gamma_1 * blk.attn.proj(got[(layer, "head_out")].flatten(2))
        assert torch.allclose(got[(layer, "block_in")] + branch, got[(layer, "attn_res")], atol=1e-6)


def test_cait_class_attention_blocks_tapped_as_their_own_layers():
    """Layers ``depth …`` are the class-attention blocks: only their attention is offered, the class
    token's softmax over itself and the patches, ``softmax(q(cls)·k(tokens)ᵀ · scale)``."""
    torch.manual_seed(0)
    model = timm.create_model("cait_xxs24_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                              depth=2, num_heads=4, depth_token_only=2).eval()
    inputs = []
    for blk in model.blocks_token_only:
        blk.register_forward_pre_hook(lambda _m, args: inputs.append(args))
    got = {}
    with torch.no_grad(), Taps(model, TAPS, lambda l, t, v: got.__setitem__((l, t), v), layers=range(4)) as taps:
        model.forward_features(torch.randn(2, 3, 32, 32))
        taps.check()
    for j, blk in enumerate(model.blocks_token_only):
        assert {t for layer, t in got if layer == 2 + j} == {"attn", "attn_logits"}
        patches, cls = inputs[j]
        with torch.no_grad():
            u = blk.norm1(torch.cat((cls, patches), 1))
            q = blk.attn.q(u[:, :1]).reshape(2, 1, 4, 8).transpose(1, 2)
            k = blk.attn.k(u).reshape(2, 17, 4, 8).transpose(1, 2)
        expected = (q @ k.transpose(-2, -1) * blk.attn.scale).softmax(-1)
        assert got[(2 + j, "attn")].shape == (2, 4, 1, 17)
        assert torch.allclose(got[(2 + j, "attn")], expected, atol=1e-6)


def test_window_layout_is_sams_partition():
    """``window_tokens_to_grid`` undoes timm's ``window_partition`` (padding dropped) and
    ``window_valid`` marks the positions it did not pad, on a 5×7 grid in 3×3 windows."""
    from timm.models.vision_transformer_sam import window_partition

    grid = torch.randn(2, 5, 7, 3)
    windows, _ = window_partition(grid, 3)
    assert torch.equal(window_tokens_to_grid(windows.flatten(1, 2), (5, 7), 3), grid.flatten(1, 2))
    padded, _ = window_partition(torch.ones(1, 5, 7, 1), 3)
    assert torch.equal(window_valid((5, 7), 3), padded.flatten(1).bool())


def test_sam_taps_on_the_image_grid():
    """SAM (NHWC, windowed block 0 on a 5×5 grid in 2×2 windows padded to 6×6, global block 1): token
    taps are ``[B, 25, ...]`` row-major on the grid, and the attention maps, applied to ``v`` (a padding
    position's ``v`` is the bias: the padding is zeros after norm1), give the model's own head outputs."""
    torch.manual_seed(0)
    model = timm.create_model("samvit_base_patch16", pretrained=False, img_size=40, patch_size=8, embed_dim=32,
                              depth=2, num_heads=2, window_size=2, global_attn_indexes=(1,), neck_chans=8).eval()
    info = vit_info(model)
    assert (info.num_prefix_tokens, info.grid_size, info.window_sizes) == (0, (5, 5), (2, 0))
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        reference = model.forward_features(x)
        got, out = capture_all(model, x)
    assert torch.allclose(out, reference, atol=1e-6)
    n = 25
    for layer, blk in enumerate(model.blocks):
        assert got[(layer, "block_in")].shape == (2, n, 32) and got[(layer, "head_out")].shape == (2, n, 2, 16)
        with torch.no_grad():
            branch = blk.attn.proj(got[(layer, "head_out")].flatten(2))
            assert torch.allclose(got[(layer, "block_in")] + branch, got[(layer, "attn_res")], atol=1e-5)
            assert torch.allclose(got[(layer, "ln1")], blk.norm1(got[(layer, "block_in")]), atol=1e-6)
    assert torch.equal(got[(0, "block_out")], got[(1, "block_in")])
    windowed, v = got[(0, "attn")], got[(0, "qkv")].reshape(2, n, 3, 2, 16)[:, :, 2]
    assert windowed.shape == (2, 9, 2, 4, 4)
    assert torch.allclose(windowed.sum(-1), torch.ones(2, 9, 2, 4), atol=1e-6)
    v_pad = model.blocks[0].attn.qkv.bias.detach().view(3, 2, 16)[2]
    # window 0: patches 0, 1, 5, 6; window 2 (columns 4-5): patches 4 and 9, its column 5 is padding
    for window, places in ((0, [0, 1, 5, 6]), (2, [4, None, 9, None])):
        v_win = torch.stack([v[:, p] if p is not None else v_pad.expand(2, 2, 16) for p in places], 1)
        heads = torch.einsum("bhqk,bkhd->bqhd", windowed[:, window], v_win)
        real = [i for i, p in enumerate(places) if p is not None]
        assert torch.allclose(heads[:, real], got[(0, "head_out")][:, [places[i] for i in real]], atol=1e-5)
    full, v = got[(1, "attn")], got[(1, "qkv")].reshape(2, n, 3, 2, 16)[:, :, 2].transpose(1, 2)
    assert full.shape == (2, 2, n, n)
    for layer in (0, 1):  # the scores come in the layout of the probabilities
        assert torch.allclose(got[(layer, "attn_logits")].softmax(-1), got[(layer, "attn")], atol=1e-6)
    assert torch.allclose((full @ v).transpose(1, 2), got[(1, "head_out")], atol=1e-5)


def test_attention_across_channels_is_refused():
    model = timm.create_model("xcit_tiny_12_p16_224", pretrained=False, img_size=32, embed_dim=32, depth=1,
                              num_heads=2)
    with pytest.raises(TapError, match="no token-to-token self-attention .* between feature channels"):
        vit_info(model)
