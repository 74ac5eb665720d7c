"""Two gloo processes with the same global batch compute what one process does.

DDP's promise is that the gradient it applies is the gradient of the global batch's loss.
So, step by step, the losses (averaged over processes) and the averaged gradients must equal
one process's, to float32 rounding. Meaningful because MoCo v3's loss needs the keys of *all*
processes (gathered, labels offset by rank), the heads' BatchNorm the statistics of the
global batch, and DINO's centre the teacher outputs of the global batch: per-process BN,
keys or centre would change the losses and gradients.

The final weights are compared with what AdamW allows. Rounding noise in the summation order
leaves a gradient element near zero free to change sign (the attention key bias has zero
gradient in exact arithmetic), and Adam turns any such element into an lr-sized step. So an
element whose gradient stays well above rounding at every step must agree to 1e-5; every
element must lie within the largest difference two Adam trajectories can have,
Σ_t 2·lr_t·c_t with c_t the bound on |m̂_t / √v̂_t| (:func:`adam_step_bound`).
"""

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")

DRIVER = Path(__file__).with_name("ddp_driver.py")
COMMON = {"model": "vit_tiny_patch4_32", "epochs": 1, "batch_size": 16, "device": "cpu", "workers": 0,
          "lr": 1e-3, "warmup_epochs": 0, "tensorboard": False,
          "model_kwargs": {"img_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2}}
METHODS = {
    # the hybrid covers MoCo v3's gathered keys and global-batch BN, and SimMIM
    "hybrid": {"method": "hybrid", "moco_mlp_dim": 32, "moco_dim": 16, "grad_cos_every": 2},
    "dino": {"method": "dino", "local_crops": 2, "dino_out_dim": 64, "dino_hidden_dim": 32,
             "dino_bottleneck_dim": 16, "dino_freeze_last_layer": 0},
}


def adam_step_bound(t: int, beta1: float, beta2: float) -> float:
    """c_t ≥ |m̂_t / √v̂_t| for any gradients (Cauchy–Schwarz on the two moving averages):

    c_t = (1 − β1)/(1 − β1^t) · √(Σ_{k<t} (β1²/β2)^k) · √((1 − β2^t)/(1 − β2)); c_1 = 1.
    """
    geo = sum((beta1 ** 2 / beta2) ** k for k in range(t))
    return (1 - beta1) / (1 - beta1 ** t) * math.sqrt(geo) * math.sqrt((1 - beta2 ** t) / (1 - beta2))


def run(cli, tmp_path: Path, data: Path, config: dict, procs: int) -> dict:
    out = tmp_path / f"{config['method']}-{procs}.pt"
    cfg = json.dumps({**COMMON, **config, "data": str(data)})
    launch = [cli.python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
    done = subprocess.run(launch + [str(DRIVER), cfg, str(out)], env=cli.env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out, weights_only=True)


def test_adam_step_bound():
    assert adam_step_bound(1, 0.9, 0.999) == pytest.approx(1.0)
    # the bound holds for the worst case of a sign flip after steady gradients
    m = v = 0.0
    for t, g in enumerate([1.0, 1.0, 1.0, -1e-3], start=1):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        assert abs(m / (1 - 0.9 ** t)) / math.sqrt(v / (1 - 0.999 ** t)) <= adam_step_bound(t, 0.9, 0.999) + 1e-12


@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_processes_match_one(tmp_path, cli, method):
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, images=rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8))
    one, two = (run(cli, tmp_path, data, METHODS[method], procs) for procs in (1, 2))
    assert len(one["steps"]) == len(two["steps"]) == 4
    above_noise: dict[str, torch.Tensor] = {}
    for t, (a, b) in enumerate(zip(one["steps"], two["steps"])):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4), t
        assert a["grads"].keys() == b["grads"].keys()
        # averaged gradient = the global batch's: at step 0 (same weights) to rounding relative to
        # the tensor's largest entry; later the weights may differ by the noise steps above
        rel = 1e-4 if t == 0 else 1e-3
        for name, ga in a["grads"].items():
            scale = ga.abs().max()
            torch.testing.assert_close(b["grads"][name], ga, rtol=0, atol=float(rel * scale + 1e-12),
                                       msg=f"step {t}: {name}")
            big = ga.abs() > 1e-2 * scale
            above_noise[name] = big & above_noise.get(name, torch.ones_like(big))

    cfg = {**COMMON, **METHODS[method]}
    from vitscope.train.config import PretrainConfig, apply_overrides, lr_at, resolve

    resolved = resolve(apply_overrides(PretrainConfig(), cfg, "the test"))
    beta2 = float(resolved.beta2 or 0.999)
    allowed = sum(2 * lr_at(t, 4, resolved) * adam_step_bound(t + 1, 0.9, beta2) for t in range(4))
    # a momentum copy (MoCo's keys, DINO's teacher) moves by (1 − m) of the online weights' step
    copy_share = 1 - (resolved.dino_m if method == "dino" else resolved.moco_m)
    for name, wa in one["weights"].items():
        wb = two["weights"][name]
        assert (wb - wa).abs().max() <= allowed + 1e-6, name
        if name in above_noise:
            keep = above_noise[name]
            torch.testing.assert_close(wb[keep], wa[keep], rtol=1e-4, atol=1e-5, msg=name)
        else:  # no gradient: frozen (equal) or a momentum copy
            torch.testing.assert_close(wb, wa, rtol=1e-4, atol=1e-5 + copy_share * allowed, msg=name)


def test_teardown_leaves_the_process_group(tmp_path):
    """The end of a run (and the driver above) leave the group with a barrier first: without it, a
    process that finished first exited with live gloo threads and aborted ("terminate called without
    an active exception") while rank 0 still wrote its file, under load on the 2-core CI machine."""
    from vitscope.train.distributed import teardown

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    assert dist.is_initialized()
    teardown()
    assert not dist.is_initialized()
    teardown()  # without a group: nothing to do
