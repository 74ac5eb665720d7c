"""Layered config: defaults, overrides, unknown keys, per-method defaults and schedules."""

import math

import pytest

from vitscope.errors import VitscopeError
from vitscope.train.config import (PretrainConfig, apply_overrides, check_resume, lr_at, momentum_at, parse_set,
                                   resolve)


def test_unknown_keys_rejected_with_valid_options():
    with pytest.raises(VitscopeError, match="unknown config key.*'epoch'.*Valid options are"):
        apply_overrides(PretrainConfig(), {"epoch": 3}, "test")


def test_values_coerced_and_type_checked():
    cfg = apply_overrides(PretrainConfig(), parse_set(["epochs=3", "lr=1e-3", "compile=true", "method=mae",
                                                       'model_kwargs={"depth": 2}']), "--set")
    assert (cfg.epochs, cfg.lr, cfg.compile, cfg.method, cfg.model_kwargs) == (3, 1e-3, True, "mae", {"depth": 2})
    with pytest.raises(VitscopeError, match="epochs"):
        apply_overrides(PretrainConfig(), {"epochs": "many"}, "test")
    with pytest.raises(VitscopeError, match="KEY=VALUE"):
        parse_set(["epochs"])


def test_resolve_fills_method_defaults():
    moco = resolve(PretrainConfig(method="moco", batch_size=512, epochs=300))
    assert moco.lr == pytest.approx(1.5e-4 * 2) and moco.weight_decay == 0.1 and moco.frozen_patch_embed
    assert moco.warmup_epochs == pytest.approx(40)
    mae = resolve(PretrainConfig(method="mae", batch_size=256))
    assert mae.mask_ratio == 0.75 and mae.beta2 == 0.95 and not mae.frozen_patch_embed
    hyb = resolve(PretrainConfig(method="hybrid", mim="simmim"))
    assert hyb.mask_ratio == 0.6
    assert resolve(PretrainConfig(method="simmim", lr=1.0)).lr == 1.0
    assert resolve(resolve(PretrainConfig())) == resolve(PretrainConfig())
    for bad in (dict(method="byol"), dict(lam=1.5), dict(local_attention=4), dict(mim="beit"), dict(local_crops=2),
                dict(method="dino", local_crops=2, local_attention=3), dict(method="dino", dino_student_temp=0)):
        with pytest.raises(VitscopeError):
            resolve(PretrainConfig(**bad))


def test_schedules():
    cfg = resolve(PretrainConfig(epochs=10, lr=1.0, min_lr=0.1, warmup_epochs=2))
    assert lr_at(0, 10, cfg) == 0 and lr_at(10, 10, cfg) == pytest.approx(0.5) and lr_at(20, 10, cfg) == 1.0
    assert lr_at(60, 10, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(100, 10, cfg) == pytest.approx(0.1)
    assert momentum_at(0, 100, 0.99) == pytest.approx(0.99) and momentum_at(100, 100, 0.99) == 1.0
    assert momentum_at(50, 100, 0.99) == pytest.approx(0.995)


def test_resume_allows_runtime_keys_only():
    saved = vars(resolve(PretrainConfig(method="simmim", epochs=4)))
    cfg = check_resume(saved, {"out": "elsewhere", "epochs": 4, "workers": 0})
    assert cfg.method == "simmim" and cfg.out == "elsewhere" and cfg.workers == 0
    with pytest.raises(VitscopeError, match=r"\['epochs'\]"):
        check_resume(saved, {"epochs": 5})
