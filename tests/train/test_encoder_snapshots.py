"""Encoder-only snapshots along a run (``snapshot_every``): fp16 ``.safetensors`` that ``vitscope.load``
builds from their own metadata, the same network the run's checkpoint gives."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch
from safetensors import safe_open

import vitscope
from vitscope.errors import VitscopeError
from vitscope.train.config import PretrainConfig, check_resume

TINY = {"img_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2}
SETTINGS = {"epochs": 2, "batch_size": 8, "device": "cpu", "tensorboard": False, "log_every": 1, "workers": 0,
            "model_kwargs": TINY}


@pytest.mark.parametrize("method", ["moco", "dino"])
def test_snapshots_every_n_steps_load_as_the_encoder(method, tmp_path):
    path = tmp_path / "imgs.npz"
    np.savez(path, images=np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8))
    extra = {"dino_out_dim": 64, "dino_hidden_dim": 32, "dino_bottleneck_dim": 16} if method == "dino" else {
        "moco_mlp_dim": 32, "moco_dim": 16}
    run = vitscope.pretrain(method, str(path), out=tmp_path / "run", progress=False, snapshot_every=3,
                            **SETTINGS, **extra)
    snaps = sorted((tmp_path / "run" / "snapshots").iterdir())
    # 4 steps: the initialisation, every 3 steps, and the last step
    assert [p.name for p in snaps] == ["step-000000.safetensors", "step-000003.safetensors", "step-000004.safetensors"]
    with safe_open(str(snaps[1]), "pt") as f:
        meta = f.metadata()
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    assert (meta["format"], meta["method"], meta["step"], meta["epoch"]) == ("vitscope-snapshot", method, "3", "1.5")
    last, final = vitscope.load(str(snaps[-1])), vitscope.load(str(run.checkpoint))  # a DINO run: the teacher both
    assert len(last.blocks) == TINY["depth"] and last.patch_embed.img_size == final.patch_embed.img_size
    for (k, a), (_, b) in zip(last.state_dict().items(), final.state_dict().items()):
        assert torch.equal(a, b.half().float()), k
    first = vitscope.load(str(snaps[0]))
    assert not torch.equal(first.blocks[0].attn.qkv.weight, last.blocks[0].attn.qkv.weight)


def test_snapshot_every_is_a_runtime_key_and_not_negative():
    saved = asdict(PretrainConfig(method="moco", out="runs/x"))
    assert check_resume(saved, {"out": "runs/x", "snapshot_every": 50}).snapshot_every == 50
    with pytest.raises(VitscopeError, match="snapshot_every must be 0"):
        vitscope.pretrain("moco", "unused.npz", out="unused", snapshot_every=-1)
