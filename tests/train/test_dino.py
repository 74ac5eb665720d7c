"""DINO against the definitions of Caron et al. (ICCV 2021) and the official main_dino.py."""

import math

import pytest
import torch
import torch.nn.functional as F

from vitscope.train.augment import BatchRandom, dino_views
from vitscope.train.config import PretrainConfig, apply_overrides, parse_set, resolve, weight_decay_at
from vitscope.train.dino import (DINO, DINOHead, default_local_size, dino_loss, koleo_loss, mean_entropy, sinkhorn_knopp,
                                 teacher_probs, teacher_temp_at, updated_center)
from vitscope.train.encoder import ViTEncoder
from vitscope.train.engine import build_objective, param_groups


def test_loss_hand_computed_over_crop_pairs():
    # K = 2, one image, 2 global crops + 1 local; student temperature 1 for readable numbers
    s = [torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([[0.0, math.log(3.0)]])]
    t = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])]
    # P_s: crop0 (1/2, 1/2), crop1 (3/4, 1/4), crop2 (1/4, 3/4)
    h = lambda p, q: -sum(pk * math.log(qk) for pk, qk in zip(p, q))  # noqa: E731
    pairs = [h((1, 0), (3 / 4, 1 / 4)), h((1, 0), (1 / 4, 3 / 4)),  # teacher crop 0 vs student 1, 2
             h((.5, .5), (1 / 2, 1 / 2)), h((.5, .5), (1 / 4, 3 / 4))]  # teacher crop 1 vs student 0, 2
    assert dino_loss(s, t, 1.0).item() == pytest.approx(sum(pairs) / 4, rel=1e-6)
    # the student temperature divides the logits
    assert dino_loss([x * 0.1 for x in s], t, 0.1).item() == pytest.approx(sum(pairs) / 4, rel=1e-6)


def test_teacher_centring_and_sharpening():
    g = torch.tensor([[2.0, 1.0, 0.0]])
    c = torch.tensor([[1.0, 0.0, 0.0]])
    p = teacher_probs(g, c, 0.5)  # softmax([1, 1, 0] / 0.5) = [e², e², 1] / (2e² + 1)
    z = 2 * math.e ** 2 + 1
    torch.testing.assert_close(p, torch.tensor([[math.e ** 2 / z, math.e ** 2 / z, 1 / z]]))
    # a lower temperature sharpens; a centre constant over K changes nothing
    assert teacher_probs(g, 0 * c, 0.04).max() > teacher_probs(g, 0 * c, 0.07).max()
    torch.testing.assert_close(teacher_probs(g, c + 5.0, 0.5), p)


def test_collapse_monitors_entropy_and_kl():
    # H((1, 0)) = 0, H((1/2, 1/2)) = log 2, H(uniform over 4) = log 4; 0·log 0 counts as 0
    p = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.25] * 4])
    assert mean_entropy(p).item() == pytest.approx((math.log(2) + math.log(4)) / 3, rel=1e-6)


def test_forward_logs_teacher_entropy_and_kl(dino):
    model = dino(warmup_teacher_temp_epochs=0)
    v1, v2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        t = model.teacher_head(model.teacher.pooled(model.teacher(torch.cat([v1, v2]))))
        p = teacher_probs(t, model.center, model.teacher_temp())
        out = model(v1, v2)
    s1, s2 = model.head(model.encoder.pooled(model.encoder(torch.cat([v1, v2])))).chunk(2)
    # KL(P_t^i || P_s^v) over the two pairs, by its definition Σ p log(p / q)
    q1, q2 = (F.softmax(s / model.student_temp, -1) for s in (s1, s2))
    p1, p2 = p.chunk(2)
    kl = ((p1 * (p1 / q2).log()).sum(-1).mean() + (p2 * (p2 / q1).log()).sum(-1).mean()) / 2
    torch.testing.assert_close(out["kl"], kl, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["teacher_entropy"], mean_entropy(p))
    assert 0 < out["teacher_entropy"].item() <= math.log(16) + 1e-6


def test_center_update_is_an_ema_of_the_batch_mean():
    c = torch.tensor([[1.0, 0.0]])
    g = torch.tensor([[0.0, 2.0], [2.0, 4.0]])  # batch mean (1, 3)
    torch.testing.assert_close(updated_center(c, g, 0.9), torch.tensor([[1.0, 0.3]]))


def test_schedules_teacher_temperature_weight_decay_momentum():
    assert teacher_temp_at(0, 0.04, 0.07, 30) == 0.04
    assert teacher_temp_at(15, 0.04, 0.07, 30) == pytest.approx(0.055)
    assert teacher_temp_at(30, 0.04, 0.07, 30) == teacher_temp_at(99, 0.04, 0.07, 30) == 0.07
    assert teacher_temp_at(0, 0.04, 0.07, 0) == 0.07
    cfg = resolve(PretrainConfig(method="dino", epochs=100))
    assert (cfg.weight_decay, cfg.weight_decay_end, cfg.clip_grad) == (0.04, 0.4, 3.0)
    # main_dino.py's defaults: τ_t = 0.04 throughout (the 0.04 → 0.07 warm-up is a --set away)
    assert (cfg.dino_warmup_teacher_temp, cfg.dino_teacher_temp, cfg.dino_warmup_teacher_temp_epochs) == (0.04, 0.04, 0)
    assert cfg.warmup_epochs == 10
    assert cfg.dino_global_crop_min == 0.14  # no local crops: the official advice
    assert resolve(PretrainConfig(method="dino", local_crops=8)).dino_global_crop_min == 0.4
    assert weight_decay_at(0, 100, cfg) == pytest.approx(0.04) and weight_decay_at(100, 100, cfg) == pytest.approx(0.4)
    assert weight_decay_at(50, 100, cfg) == pytest.approx(0.22)
    moco = resolve(PretrainConfig(method="moco"))
    assert moco.weight_decay_end is None and weight_decay_at(50, 100, moco) == moco.weight_decay and moco.clip_grad == 0


def test_head_is_a_weight_normalised_cosine_classifier():
    torch.manual_seed(0)
    head = DINOHead(8, out_dim=5, hidden_dim=16, bottleneck_dim=4)
    layers = [type(m).__name__ for m in head.mlp]
    assert layers == ["Linear", "GELU", "Linear", "GELU", "Linear"]
    x = torch.randn(3, 8)
    z = head.mlp(x)
    # official: weight_norm(Linear(bottleneck, K, bias=False)) with weight_g ≡ 1
    ref = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(4, 5, bias=False))
    with torch.no_grad():
        ref.parametrizations.weight.original0.fill_(1.0)
        ref.parametrizations.weight.original1.copy_(head.prototypes)
    torch.testing.assert_close(head(x), ref(F.normalize(z, dim=-1)))
    assert head(x).abs().max() <= 1 + 1e-6
    assert head.last_layer() == [head.prototypes]


def test_head_with_learnable_prototype_norms_matches_official_weight_norm():
    """norm_last_layer=False: logit k = g_k · cos(z, w_k), g the official ``weight_g`` ([K, 1])."""
    torch.manual_seed(0)
    head = DINOHead(8, out_dim=5, hidden_dim=16, bottleneck_dim=4, norm_last_layer=False)
    torch.testing.assert_close(head.gains, torch.ones(5, 1))  # official: weight_g.fill_(1)
    with torch.no_grad():
        head.gains.copy_(torch.tensor([[0.5], [2.0], [1.0], [3.0], [0.1]]))
    x = torch.randn(3, 8)
    z = F.normalize(head.mlp(x), dim=-1)
    ref = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(4, 5, bias=False))
    with torch.no_grad():
        ref.parametrizations.weight.original0.copy_(head.gains)
        ref.parametrizations.weight.original1.copy_(head.prototypes)
    torch.testing.assert_close(head(x), ref(z))
    cos = z @ F.normalize(head.prototypes, dim=1).T
    torch.testing.assert_close(head(x), cos * head.gains.T)
    # the gains are a [K, 1] matrix, weight-decayed as the official weight_g
    decayed = param_groups(head, 0.04)[0]["params"]
    assert any(p is head.gains for p in decayed) and any(p is head.prototypes for p in decayed)
    assert head.last_layer() == [head.prototypes, head.gains]


def test_views_follow_the_official_pipeline():
    first, second, *local = dino_views((0.4, 1.0), (0.05, 0.4), 3)
    assert (first.blur, first.solarize, second.blur, second.solarize) == (1.0, 0.0, 0.1, 0.2)
    assert len(local) == 3 and all(v.blur == 0.5 and v.scale == (0.05, 0.4) for v in local)
    assert all(v.jitter == 0.8 and v.grey == 0.2 for v in (first, second, *local))


@pytest.fixture
def dino(tiny_vit):
    def make(**kw):
        return DINO(ViTEncoder(tiny_vit(), sincos_pos=True), out_dim=16, hidden_dim=32, bottleneck_dim=8, **kw)
    return make


def test_local_crops_use_the_resampled_position_embedding(dino):
    model = dino(local_crops=2)
    enc = model.encoder
    assert default_local_size(enc) == model.local_size == 8  # 16 px · 96/224 → 2 patches of 4 px
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(enc.patch_pos((4, 4)), enc.patch_pos())
    small = enc(x[..., :8, :8])
    assert small.shape == (2, 1 + 4, 32)
    imgs = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    views = model.make_views(imgs, BatchRandom(0, 0, 2, 0, 2, torch.device("cpu")), torch.zeros(3), torch.ones(3))
    assert [tuple(v.shape[-2:]) for v in views] == [(16, 16), (16, 16), (8, 8), (8, 8)]
    # the student encodes crops of one size together; the result equals crop by crop
    _, logits = model.student_outputs(views)
    torch.testing.assert_close(logits[3], model.head(enc.pooled(enc(views[3]))), atol=1e-5, rtol=1e-4)


def test_teacher_momentum_eval_mode_centre_and_frozen_last_layer(dino):
    model = dino(warmup_teacher_temp_epochs=0)
    for s, t in zip(model.head.parameters(), model.teacher_head.parameters()):
        torch.testing.assert_close(s, t)
    with torch.no_grad():
        model.head.prototypes.add_(1.0)
    before = model.teacher_head.prototypes.clone()
    model.update_momentum(0.9)
    torch.testing.assert_close(model.teacher_head.prototypes, 0.9 * before + 0.1 * model.head.prototypes)
    model.train()
    assert model.encoder.training and not model.teacher.training and not model.teacher_head.training

    v1, v2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        t = model.teacher_head(model.teacher.pooled(model.teacher(torch.cat([v1, v2]))))
    loss = model(v1, v2)["loss"]
    torch.testing.assert_close(model.center, 0.1 * t.mean(0, keepdim=True))
    loss.backward()
    model.set_epoch(0.5)
    model.cancel_gradients()
    assert model.head.prototypes.grad is None and model.head.mlp[0].weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())
    model(v1, v2)["loss"].backward()
    model.set_epoch(1.0)
    model.cancel_gradients()
    assert model.head.prototypes.grad is not None


def test_frozen_last_layer_includes_learnable_norms(dino):
    model = dino(norm_last_layer=False)
    assert model.teacher_head.gains is not None and not model.teacher_head.gains.requires_grad
    v1, v2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    model(v1, v2)["loss"].backward()
    assert model.head.gains.grad is not None and model.head.gains.grad.abs().sum() > 0
    model.set_epoch(0.5)
    model.cancel_gradients()
    assert model.head.gains.grad is None and model.head.prototypes.grad is None
    model(v1, v2)["loss"].backward()
    model.set_epoch(1.0)
    model.cancel_gradients()
    assert model.head.gains.grad is not None


def test_norm_last_layer_setting_reaches_the_head(tiny_vit):
    encoder = ViTEncoder(tiny_vit(), sincos_pos=True)
    cfg = resolve(apply_overrides(PretrainConfig(method="dino", dino_out_dim=16, dino_hidden_dim=32),
                                  parse_set(["dino_norm_last_layer=false"]), "--set"))
    assert build_objective(cfg, encoder).head.gains is not None
    assert build_objective(resolve(PretrainConfig(method="dino", dino_out_dim=16, dino_hidden_dim=32)),
                           encoder).head.gains is None


def test_sinkhorn_knopp_worked_example():
    # g = [[log 3, 0], [0, 0]], τ = 1: Q = exp(g)ᵀ / 6 = [[1/2, 1/6], [1/6, 1/6]] (K × B).
    # Rows to 1/K: [[3/8, 1/8], [1/4, 1/4]]; columns to 1/B: [[3/10, 1/6], [1/5, 1/3]]; × B, transposed:
    q = sinkhorn_knopp(torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]]), 1.0, iterations=1)
    torch.testing.assert_close(q, torch.tensor([[0.6, 0.4], [1 / 3, 2 / 3]]))
    # each sample's row is a distribution after every iteration; the prototypes' totals (B/K = 1 each)
    # are 14/15 and 16/15 after one iteration and converge to 1
    torch.testing.assert_close(q.sum(1), torch.ones(2))
    torch.testing.assert_close(q.sum(0), torch.tensor([14 / 15, 16 / 15]))
    many = sinkhorn_knopp(torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]]), 1.0, iterations=100)
    torch.testing.assert_close(many.sum(0), torch.ones(2))
    torch.testing.assert_close(many.sum(1), torch.ones(2))


def test_sinkhorn_knopp_equipartitions_a_batch_that_prefers_one_prototype():
    torch.manual_seed(0)
    g = torch.rand(64, 8) * 2 - 1
    g[:, 0] += 1.0  # every image prefers prototype 0: softmax gives it most of the mass, Sinkhorn–Knopp does not
    q = sinkhorn_knopp(g, 0.04, iterations=3)
    torch.testing.assert_close(q.sum(1), torch.ones(64))
    assert teacher_probs(g, torch.zeros(1, 8), 0.04).sum(0)[0] > 32  # softmax: most of the batch on prototype 0
    assert (q.sum(0) - 64 / 8).abs().max() < 2  # Sinkhorn–Knopp: near B/K = 8 each after 3 iterations,
    torch.testing.assert_close(sinkhorn_knopp(g, 0.04, iterations=200).sum(0), torch.full((8,), 8.0))  # B/K at the limit
    # a constant added to every logit changes nothing, even where exp(g / τ) alone would overflow float32
    # (g / τ ≈ 150 > 88.7): the global maximum is subtracted first. Tolerance: float32 rounding of g / τ
    # near 175 (ulp 1.5e-5) is a relative error of that size in exp
    assert torch.isinf(torch.exp((g + 5.0) / 0.04)).any()
    torch.testing.assert_close(sinkhorn_knopp(g + 5.0, 0.04), q, rtol=1e-4, atol=1e-6)


def test_koleo_loss_hand_computed():
    # unit vectors at 0°, 60° and 180° (lengths 1, 3, 2: KoLeo normalises them); nearest neighbours
    # 0° → 60° (chord 1), 60° → 0° (chord 1), 180° → 60° (chord 2 sin 60° = √3)
    x = torch.tensor([[1.0, 0.0], [1.5, 1.5 * math.sqrt(3)], [-2.0, 0.0]])
    assert koleo_loss(x).item() == pytest.approx(-(0 + 0 + math.log(math.sqrt(3))) / 3, abs=1e-6)
    # its gradient spreads the points: a step along it raises the nearest-neighbour distances
    x.requires_grad_(True)
    koleo_loss(x).backward()
    with torch.no_grad():
        assert koleo_loss(x - 0.1 * x.grad).item() < koleo_loss(x).item()


def test_sinkhorn_centring_and_koleo_in_the_objective(dino):
    model = dino(centering="sinkhorn", sinkhorn_iterations=3, koleo_weight=0.1)
    v1, v2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        t = model.teacher_head(model.teacher.pooled(model.teacher(torch.cat([v1, v2]))))
        p = sinkhorn_knopp(t, model.teacher_temp(), 3)
        out = model(v1, v2)
    feats, student = model.student_outputs((v1, v2))
    distill = dino_loss(student, list(p.chunk(2)), model.student_temp)
    koleo = koleo_loss(feats[:4]) + koleo_loss(feats[4:])
    torch.testing.assert_close(out["loss"], distill + 0.1 * koleo, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["kl"], distill - mean_entropy(p), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["koleo"], koleo, atol=1e-5, rtol=1e-5)
    assert model.center.abs().sum() == 0  # Sinkhorn–Knopp replaces the centre: it stays unused
    with pytest.raises(ValueError, match="centring"):
        dino(centering="mean")


def test_last_layer_lr_factor_and_weight_decay_switch(tmp_path):
    from vitscope.train.distributed import setup
    from vitscope.train.engine import Trainer

    cfg = resolve(apply_overrides(PretrainConfig(method="dino", dino_out_dim=16, dino_hidden_dim=32, epochs=8,
                                                 batch_size=8, model_kwargs=dict(img_size=16, embed_dim=32, depth=1, num_heads=2)),
                                  parse_set(["dino_last_layer_lr=0.1", "dino_last_layer_decay=false"]), "--set"))
    trainer = Trainer(cfg, setup("cpu"))
    groups = trainer.optimizer.param_groups
    assert [id(p) for p in groups[2]["params"]] == [id(trainer.objective.head.prototypes)]
    assert all(id(p) != id(trainer.objective.head.prototypes) for g in groups[:2] for p in g["params"])
    images = torch.randint(0, 256, (cfg.batch_size, 3, 16, 16), dtype=torch.uint8)
    trainer.step(images, 300, 100)  # epoch 3 of 8: past the freeze, before the end of the cosine
    lr = groups[0]["lr"]
    assert lr > 0 and groups[2]["lr"] == pytest.approx(0.1 * lr) and groups[1]["lr"] == lr
    assert groups[0]["weight_decay"] == pytest.approx(weight_decay_at(300, 800, cfg)) and groups[2]["weight_decay"] == 0
    with pytest.raises(Exception, match="dino_centering"):
        resolve(PretrainConfig(method="dino", dino_centering="mean"))
