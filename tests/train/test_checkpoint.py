"""Atomic checkpoints in vitscope's format; RNG state round trip."""

import random

import numpy as np
import pytest
import timm
import torch

from vitscope.errors import VitscopeError
from vitscope.train import checkpoint


def test_save_is_atomic_and_loads_weights_only(tmp_path, tiny_vit):
    vit = tiny_vit()
    path = tmp_path / "run" / "checkpoint.pt"
    state = {"arch": "vit_tiny_patch4_32", "arch_kwargs": {"img_size": 16, "patch_size": 4, "embed_dim": 32,
                                                           "depth": 2, "num_heads": 2, "num_classes": 0},
             "model": vit.state_dict(), "epoch": 3, "rng": checkpoint.rng_state()}
    checkpoint.save(path, state)
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temp file left
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "vitscope-checkpoint" and raw["version"] == 1 and raw["epoch"] == 3
    again = timm.create_model(raw["arch"], **raw["arch_kwargs"])
    again.load_state_dict(raw["model"])  # strict: the encoder is in timm's key layout
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(VitscopeError):
        checkpoint.load(tmp_path / "bad.pt")


def test_rng_state_round_trip():
    state = checkpoint.rng_state()
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws
