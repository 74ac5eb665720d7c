"""``vitscope.pretrain``: pretrain a ViT with MoCo v3, DINO, SimMIM, MAE or the CL + MIM hybrid (Park et al. Sec. 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitscope.api.result import PathLike
from vitscope.api.results import Pretraining, read
from vitscope.train.config import config_for


def pretrain(method: str | None = None, data: str | None = None, *, out: PathLike, resume: bool = False,
             progress: bool = True, **settings: Any) -> Pretraining:
    """Pretrain a ViT self-supervised; return the finished run (its ``pretrain.json``).

    ``method``: moco, dino, simmim, mae or hybrid (default moco); ``data``: an image folder, a
    ``.npz`` file or ``cifar10[:train]`` (a spec: the training pipeline loads and augments on the
    device). ``settings``: any key of :class:`vitscope.train.config.PretrainConfig`, as
    ``vitscope pretrain --set`` takes them (``model``, ``epochs``, ``batch_size``, ``lr``, ``lam``
    for the hybrid's L = (1−λ)·L_MIM + λ·L_CL, ``model_kwargs``, ``precision``, ``device``, ...;
    docs/pretrain.md gives each method's defaults and the official settings). ``out`` (required)
    receives ``checkpoint.pt``, ``config.json``, ``log.jsonl`` and, when the run ends,
    ``pretrain.json``; ``resume`` continues the run in ``out`` from its checkpoint (only runtime
    settings may change). The command line's SIGTERM / SIGUSR1 handling (pre-emption) is the
    command's; in Python, Ctrl-C ends the run and ``resume=True`` continues it from its last checkpoint.

    >>> run = vitscope.pretrain("hybrid", "cifar10:train", out="runs/hybrid", lam=0.2, epochs=16)
    >>> run.plot(); vitscope.probe(run.checkpoint, "cifar10:train", "cifar10:test", out="runs/hybrid-probe")
    """
    from vitscope.train.engine import train

    overrides = {k: v for k, v in {"method": method, "data": data}.items() if v is not None}
    cfg = config_for({**overrides, **settings, "out": str(out)}, resume)
    train(cfg, resume=resume, progress=progress)
    return read(Path(cfg.out))
