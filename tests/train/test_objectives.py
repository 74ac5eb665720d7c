"""Objectives against their papers' definitions, on a depth-2 width-32 ViT."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from vitscope.train.encoder import ViTEncoder, sincos_2d
from vitscope.train.hybrid import Hybrid, combine, gradient_cosines
from vitscope.train.local_attention import grid_coords, local_window_mask
from vitscope.train.mae import MAE, masked_mse, patchify, random_masking
from vitscope.train.moco import MoCoV3, info_nce, mlp
from vitscope.train.simmim import SimMIM, block_mask, masked_l1


def test_encoder_matches_timm_forward_features(tiny_vit):
    vit = tiny_vit()
    x = torch.randn(2, 3, 16, 16)
    ref = vit.forward_features(x)
    enc = ViTEncoder(vit)
    torch.testing.assert_close(enc(x), ref)
    torch.testing.assert_close(enc.pooled(enc(x)), ref[:, 0])


def test_sincos_matches_formula_and_freezing(tiny_vit):
    pe = sincos_2d((2, 3), 8)
    # token 4 is row 1, column 1; ω = [1, 1/100]
    omega = torch.tensor([1.0, 0.01])
    torch.testing.assert_close(pe[4], torch.cat([omega.sin(), omega.cos(), omega.sin(), omega.cos()]))
    torch.testing.assert_close(pe[2], torch.cat([(2 * omega).sin(), (2 * omega).cos(), torch.zeros(2), torch.ones(2)]))
    enc = ViTEncoder(tiny_vit(), sincos_pos=True, frozen_patch_embed=True)
    assert not enc.vit.pos_embed.requires_grad and not enc.vit.patch_embed.proj.weight.requires_grad
    torch.testing.assert_close(enc.vit.pos_embed[0, 1:], sincos_2d((4, 4), 32))


def test_moco_heads_follow_official_builder():
    proj, pred = mlp(3, 32, 64, 16), mlp(2, 16, 64, 16, last_bn=False)
    kinds = [type(m).__name__ for m in proj]
    assert kinds == ["Linear", "SyncBatchNorm1d", "ReLU", "Linear", "SyncBatchNorm1d", "ReLU", "Linear",
                     "SyncBatchNorm1d"]
    assert all(m.bias is None for m in proj if isinstance(m, nn.Linear))
    assert not proj[-1].affine and proj[1].affine
    assert type(pred[-1]).__name__ == "Linear"


def test_info_nce_hand_computed():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    k = torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])  # 2 processes' keys
    t = 0.5
    # rank 1: query i's positive is key 2 + i
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = qn @ kn.T / t
    expected = -(torch.log_softmax(logits, 1)[0, 2] + torch.log_softmax(logits, 1)[1, 3]) / 2 * 2 * t
    torch.testing.assert_close(info_nce(q, k, t, offset=2), expected)


def test_moco_momentum_update_and_loss(tiny_vit):
    model = MoCoV3(ViTEncoder(tiny_vit()), dim=8, mlp_dim=16)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    before = model.momentum_encoder.vit.blocks[0].attn.qkv.weight.clone()
    online = model.encoder.vit.blocks[0].attn.qkv.weight.clone()
    model.update_momentum(0.9)
    torch.testing.assert_close(model.momentum_encoder.vit.blocks[0].attn.qkv.weight, 0.9 * before + 0.1 * online)
    v1, v2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    # both views share one encoder pass; the heads (BatchNorm) still see one view at a time
    alone = model.predictor(model.projector(model.encoder.pooled(model.encoder(v2))))
    torch.testing.assert_close(model.queries(v1, v2)[1], alone, atol=1e-5, rtol=1e-4)
    loss = model(v1, v2)["loss"]
    loss.backward()
    assert loss.item() > 0 and model.encoder.vit.blocks[0].attn.qkv.weight.grad is not None
    assert all(p.grad is None for p in model.momentum_encoder.parameters())


def test_block_mask_granularity_and_ratio():
    scores = torch.rand(3, 2, 2, generator=torch.Generator().manual_seed(0))
    m = block_mask(scores, 0.6, 2)  # 2×2 mask patches of 2×2 tokens -> 4×4 token grid
    assert m.shape == (3, 16)
    grid = m.view(3, 4, 4)
    assert (grid.sum((1, 2)) == math.ceil(4 * 0.6) * 4).all()
    assert torch.equal(grid[:, ::2, ::2], grid[:, 1::2, 1::2])  # each 2×2 block is all in or all out
    assert torch.equal(grid[:, ::2, ::2], grid[:, ::2, 1::2])


def test_masked_l1_counts_masked_pixels_only():
    target = torch.zeros(1, 3, 4, 4)
    pred = torch.zeros(1, 3, 4, 4)
    pred[..., :2, :2] = 2.0  # token 0 of a 2×2 grid of 2-px patches: error 2
    pred[..., 2:, 2:] = 5.0  # token 3, not masked
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(masked_l1(pred, target, mask, 2), torch.tensor(2.0 * 12 / 24), atol=1e-5, rtol=1e-5)


def test_simmim_masks_with_mask_token(tiny_vit):
    model = SimMIM(ViTEncoder(tiny_vit()), mask_ratio=0.5, mask_patch_size=8)
    x = torch.randn(2, 3, 16, 16)
    mask = block_mask(torch.rand(2, 2, 2), 0.5, 2)
    rec = model.reconstruct(x, mask)
    assert rec.shape == x.shape
    # masked patches' content cannot leak: changing them leaves the reconstruction unchanged
    m_px = mask.view(2, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    torch.testing.assert_close(model.reconstruct(x + 5 * m_px * torch.randn_like(x), mask), rec)
    loss = model(x, mask)["loss"]
    loss.backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0


def test_random_masking_contract():
    x = torch.arange(2 * 8, dtype=torch.float).view(2, 8, 1)
    noise = torch.rand(2, 8, generator=torch.Generator().manual_seed(0))
    kept, mask, ids_restore, ids_keep = random_masking(x, 0.75, noise)
    assert kept.shape == (2, 2, 1) and mask.sum(1).tolist() == [6.0, 6.0]
    assert torch.equal(kept[..., 0], x[..., 0].gather(1, noise.argsort(1)[:, :2]))
    for i in range(2):  # 0 is keep: the kept tokens are exactly the mask-0 positions
        assert sorted(ids_keep[i].tolist()) == torch.nonzero(mask[i] == 0)[:, 0].tolist()
    shuffled = x[..., 0].gather(1, noise.argsort(1))
    assert torch.equal(shuffled.gather(1, ids_restore), x[..., 0])


def test_patchify_and_masked_mse():
    img = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).view(2, 3, 4, 4)
    p = patchify(img, 2)
    assert p.shape == (2, 4, 12)
    assert p[0, 1, :3].tolist() == [img[0, 0, 0, 2].item(), img[0, 1, 0, 2].item(), img[0, 2, 0, 2].item()]
    target = torch.tensor([[[1.0, 3.0], [0.0, 0.0]]])
    pred = torch.tensor([[[0.0, 0.0], [9.0, 9.0]]])
    mask = torch.tensor([[1.0, 0.0]])
    torch.testing.assert_close(masked_mse(pred, target, mask, norm_pix=False), torch.tensor(5.0))
    normed = (torch.tensor([1.0, 3.0]) - 2) / (2 + 1e-6) ** 0.5  # unbiased var of [1, 3] is 2
    torch.testing.assert_close(masked_mse(pred, target, mask, norm_pix=True), (normed ** 2).mean())


def test_mae_encoder_sees_visible_tokens_only(tiny_vit):
    model = MAE(ViTEncoder(tiny_vit()), mask_ratio=0.75, decoder_dim=16, decoder_depth=1, decoder_heads=2)
    x, noise = torch.randn(2, 3, 16, 16), torch.rand(2, 16)
    latent, mask, ids_restore = model.forward_encoder(x, noise)
    assert latent.shape == (2, 1 + 4, 32)
    assert model.forward_decoder(latent, ids_restore).shape == (2, 16, 48)
    model(x, noise)["loss"].backward()
    assert model.encoder.vit.blocks[1].mlp.fc2.weight.grad is not None


def test_hybrid_endpoints_and_gradient_cosines(tiny_vit):
    enc = ViTEncoder(tiny_vit())
    hybrid = Hybrid(MoCoV3(enc, dim=8, mlp_dim=16), SimMIM(enc), lam=0.3)
    assert combine(torch.tensor(2.0), torch.tensor(5.0), 0.0) == 2.0
    assert combine(torch.tensor(2.0), torch.tensor(5.0), 1.0) == 5.0
    v = torch.randn(4, 3, 16, 16)
    out = hybrid(v, v.flip(-1), v, block_mask(torch.rand(4, 2, 2), 0.6, 2))
    torch.testing.assert_close(out["loss"], 0.7 * out["loss_mim"] + 0.3 * out["loss_cl"])
    assert set(enc.block_groups(2)) == {"embed", "blocks0-0", "blocks1-1"}
    # hand case: loss_a = <w, a>, loss_b = <w, b> have gradients a and b
    w = nn.Parameter(torch.ones(2))
    cos = gradient_cosines((w * torch.tensor([1.0, 0.0])).sum(), (w * torch.tensor([1.0, 1.0])).sum(), {"g": [w]})
    torch.testing.assert_close(cos["g"], torch.tensor(2 ** -0.5))


def test_local_window_mask_hand_case_and_locality(tiny_vit):
    rows, cols = grid_coords((3, 3))
    m = local_window_mask(rows, cols, 3, 1)
    assert m.shape == (10, 10) and m[0].all() and not m[1:, 0].any()
    # patch 0 (corner) sees patches 0, 1, 3, 4; the centre patch 4 sees all nine
    assert torch.nonzero(m[1, 1:])[:, 0].tolist() == [0, 1, 3, 4]
    assert m[5, 1:].all()
    vit = tiny_vit(depth=1)
    enc = ViTEncoder(vit, local_attention=3)
    x = torch.randn(1, 3, 16, 16)
    far = x.clone()
    far[..., 12:, 12:] += 3.0  # patch (3, 3): outside patch (0, 0)'s 3×3 window
    torch.testing.assert_close(enc(x)[:, 1], enc(far)[:, 1])
    assert not torch.allclose(ViTEncoder(tiny_vit(depth=1))(x)[:, 1], ViTEncoder(tiny_vit(depth=1))(far)[:, 1])
    # MAE: per-image masks follow the kept tokens
    noise = torch.rand(2, 16)
    model = MAE(ViTEncoder(tiny_vit(), local_attention=3), decoder_dim=16, decoder_depth=1, decoder_heads=2)
    assert model.forward_encoder(torch.randn(2, 3, 16, 16), noise)[0].shape == (2, 5, 32)


def test_hybrid_with_mae(tiny_vit):
    enc = ViTEncoder(tiny_vit())
    hybrid = Hybrid(MoCoV3(enc, dim=8, mlp_dim=16), MAE(enc, decoder_dim=16, decoder_depth=1, decoder_heads=2), 0.5)
    v = torch.randn(4, 3, 16, 16)
    out = hybrid(v, v.flip(-1), v, torch.rand(4, 16))
    torch.testing.assert_close(out["loss"], 0.5 * out["loss_mim"] + 0.5 * out["loss_cl"])
    out["loss"].backward()
    assert hybrid.mim.decoder_pred.weight.grad is not None and hybrid.cl.predictor[0].weight.grad is not None
