"""Linear probes: MAE head (BN without affine + linear), all blocks together == each alone."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from vitscope.errors import VitscopeError
from vitscope.eval.linear_probe import (LayerwiseLinearProbe, ProbeTraining, accuracy_per_layer, fit_probes,
                                        train_probe)
from vitscope.schedule import warmup_cosine


def blobs(n: int, layers: int, dim: int, classes: int, seed: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs, one centre per class; block ``l`` gets the noise level ``spread · l``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    y = rng.integers(0, classes, n)
    x = np.stack([centres[y] + spread * l * rng.normal(size=(n, dim)) for l in range(layers)], axis=1)
    return x.astype(np.float16), y


def test_linearly_separable_features_reach_full_accuracy():
    xtr, ytr = blobs(200, 2, 8, 3, 0, 0.1)
    xva, yva = blobs(100, 2, 8, 3, 0, 0.1)  # same centres (same seed), fresh noise via n
    _, res = fit_probes(xtr, ytr, xva, yva, 3, ProbeTraining(epochs=10, batch_size=32))
    assert np.allclose(res["accuracy"], 1.0)
    assert np.allclose(res["train_accuracy"], 1.0)


def test_bn_without_affine_then_linear():
    probe = LayerwiseLinearProbe(2, 4, 3)
    assert not probe.bn.affine and probe.bn.weight is None and probe.bn.bias is None
    assert probe.bn.eps == 1e-6  # MAE's BatchNorm1d(..., affine=False, eps=1e-6)
    x = torch.randn(16, 2, 4)
    out = probe.train()(x)
    mean, var = x.mean(0), x.var(0, unbiased=False)
    manual = torch.einsum("bld,ldc->blc", (x - mean) / torch.sqrt(var + 1e-6), probe.weight) + probe.bias
    torch.testing.assert_close(out, manual, rtol=1e-4, atol=1e-5)
    exported = probe.export(1)
    assert exported["weight"].shape == (3, 4) and exported["bn_mean"].shape == (4,)
    torch.testing.assert_close(exported["weight"], probe.weight[1].detach().T)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_all_blocks_together_equal_each_block_alone(optimizer):
    x, y = blobs(90, 3, 6, 4, 1, 1.0)
    cfg = ProbeTraining(epochs=3, batch_size=16, optimizer=optimizer, weight_decay=0.01, warmup_epochs=1, seed=3)
    torch.manual_seed(0)
    together = LayerwiseLinearProbe(3, 6, 4)
    init = copy.deepcopy(together)
    train_probe(together, x, y, cfg)
    for layer in range(3):
        alone = LayerwiseLinearProbe(1, 6, 4)
        with torch.no_grad():
            alone.weight.copy_(init.weight[layer:layer + 1])
            alone.bias.copy_(init.bias[layer:layer + 1])
        train_probe(alone, x[:, layer:layer + 1], y, cfg)
        torch.testing.assert_close(alone.weight[0], together.weight[layer], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(alone.bias[0], together.bias[layer], rtol=1e-4, atol=1e-5)
        sl = slice(layer * 6, (layer + 1) * 6)
        torch.testing.assert_close(alone.bn.running_mean, together.bn.running_mean[sl])
        torch.testing.assert_close(alone.bn.running_var, together.bn.running_var[sl])


def test_reported_accuracy_is_the_final_epoch():
    xtr, ytr = blobs(64, 2, 5, 3, 2, 2.0)
    xva, yva = blobs(40, 2, 5, 3, 2, 2.0)
    # a large lr makes the per-epoch accuracy move around; what is reported must be the last value
    probe, res = fit_probes(xtr, ytr, xva, yva, 3, ProbeTraining(epochs=6, batch_size=8, lr=5.0))
    per_epoch = np.array([h["val_accuracy"] for h in res["history"]])
    assert len(res["history"]) == 6
    assert res["accuracy"] == per_epoch[-1].tolist()
    np.testing.assert_allclose(res["accuracy"], accuracy_per_layer(probe, xva, yva))


def test_default_lr_follows_batch_scaling():
    assert ProbeTraining(batch_size=512).resolved_lr == pytest.approx(0.2)
    assert ProbeTraining(batch_size=256, optimizer="adamw").resolved_lr == pytest.approx(1e-3)
    assert ProbeTraining(lr=0.5).resolved_lr == 0.5
    with pytest.raises(VitscopeError, match="Valid options"):
        ProbeTraining(optimizer="lars")


def test_warmup_cosine_hand_values():
    assert warmup_cosine(0, 100, 10, 1.0) == 0.0
    assert warmup_cosine(5, 100, 10, 1.0) == pytest.approx(0.5)
    assert warmup_cosine(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10, 1.0) == pytest.approx(0.5)  # half way through the cosine
    assert warmup_cosine(100, 100, 10, 1.0, min_lr=0.1) == pytest.approx(0.1)
    assert warmup_cosine(30, 100, 0, 2.0) == pytest.approx(1.0 + math.cos(0.3 * math.pi))
