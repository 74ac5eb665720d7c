"""Fine-tuning a pretrained ViT end to end (Park et al. Table A.1, scaled down).

Recipe (defaults, after Park et al. Table A.1 "Fine-tuning", which follows SimMIM):
AdamW (β = 0.9, 0.999), ``lr = 1.25e-3 × batch / 512`` (SimMIM's scaling rule), weight
decay 0.05 (none on 1-D parameters, position embedding and tokens), layer-wise lr decay
0.65, linear warm-up then cosine decay per iteration, RandAugment ``rand-m9-mstd0.5-inc1``,
mixup 0.8, cutmix 1.0, label smoothing 0.1 (``timm.data.Mixup`` + ``SoftTargetCrossEntropy``),
stochastic depth 0.1 (linearly increasing over blocks), gradient clipping at norm 5.0.
Epochs are scaled down from 100 (warm-up 20) to what the user asks for (default warm-up
5 epochs).

Layer-wise lr decay (BEiT, MAE, SimMIM; :func:`vit_layer_id`): with ``L`` blocks,
embeddings get ``lr·d^(L+1)``, block ``i`` (0-based) ``lr·d^(L−i)``, final norm and head ``lr``.

The run writes ``checkpoint.pt`` after every epoch in vitscope's checkpoint format
(``format``, ``version``, ``arch``, ``arch_kwargs``, ``model`` + ``optimizer``,
``epoch``, ``history``, ``config``), atomically; ``resume=True`` continues from it.
Every epoch reseeds torch, numpy and ``random`` with ``seed + epoch``, so a resumed run
draws the same batches, augmentations and mixup as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import timm.data
import torch
from timm.layers import DropPath
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from vitscope.data import SkipLog, iterate, make_loader
from vitscope.data.images import collate
from vitscope.data.transforms import model_data_config
from vitscope.errors import Stopped, VitscopeError
from vitscope.eval.finetune_config import FinetuneConfig
from vitscope.eval.labelled import LabelledSet
from vitscope.eval.reinit import parse_reinit, reinit_blocks
from vitscope.models.finite import check_finite_activations
from vitscope.results import atomic_torch_save
from vitscope.schedule import warmup_cosine
from vitscope.stopping import deferred_stop, ignore_stop_signals
from vitscope.taps import blocks_of
from vitscope.train.checkpoint import rng_state, set_rng_state

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "vitscope-checkpoint"
CHECKPOINT_NAME = "checkpoint.pt"


EMBEDDING_PREFIXES = ("cls_token", "reg_token", "mask_token", "pos_embed", "patch_embed", "norm_pre")


def vit_layer_id(name: str, depth: int) -> int:
    """Layer id of a ViT parameter for layer-wise lr decay (BEiT / MAE / SimMIM convention).

    ``0`` for embeddings (tokens, position embedding, patch embedding), ``i + 1`` for
    ``blocks.i.*``, ``depth + 1`` for everything after the blocks (final norm, head).
    """
    if name.startswith(EMBEDDING_PREFIXES):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def layer_decay_param_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW parameter groups with ``lr = lr · d^(depth + 1 − layer_id)`` (:func:`vit_layer_id`).

    No weight decay on 1-D parameters (biases, norms) and on ``model.no_weight_decay()``
    (position embedding, tokens). Each group keeps its ``lr_scale`` for the schedule.
    """
    depth = len(blocks_of(model))
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = vit_layer_id(name, depth)
        decay = p.ndim > 1 and name not in skip
        scale = layer_decay ** (depth + 1 - layer)
        g = groups.setdefault((layer, decay), {"params": [], "lr_scale": scale, "lr": lr * scale,
                                                "weight_decay": weight_decay if decay else 0.0})
        g["params"].append(p)
    return list(groups.values())


def set_drop_path(model: nn.Module, rate: float) -> None:
    """Stochastic depth with rates ``linspace(0, rate, L)`` over the blocks (timm's rule)."""
    blocks = blocks_of(model)
    for r, block in zip(torch.linspace(0, rate, len(blocks)).tolist(), blocks, strict=True):
        if not (hasattr(block, "drop_path1") and hasattr(block, "drop_path2")):
            raise VitscopeError(f"{type(block).__name__} has no drop_path1/drop_path2: cannot set drop path")
        block.drop_path1 = DropPath(r) if r > 0 else nn.Identity()
        block.drop_path2 = DropPath(r) if r > 0 else nn.Identity()


def arch_of(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """timm architecture name and the ``timm.create_model`` kwargs that rebuild ``model``'s shape."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    name = cfg.get("architecture")
    if not name:
        raise VitscopeError(f"cannot tell the timm architecture of {type(model).__name__}")
    pe = model.patch_embed
    kwargs: dict[str, Any] = dict(getattr(model, "vitscope_arch_kwargs", {}) or {})
    kwargs.update(
        img_size=list(pe.img_size), patch_size=list(pe.patch_size), embed_dim=int(model.embed_dim),
        depth=len(model.blocks), num_heads=int(model.blocks[0].attn.num_heads), num_classes=int(model.num_classes),
    )
    if type(model).__name__ == "VisionTransformer":
        kwargs.update(mlp_ratio=model.blocks[0].mlp.fc1.out_features / model.embed_dim,
                      global_pool=str(model.global_pool), class_token=model.cls_token is not None,
                      reg_tokens=int(model.num_reg_tokens), no_embed_class=bool(model.no_embed_class))
    return name, kwargs


def train_transform(model: nn.Module, cfg: FinetuneConfig):
    """timm's training transform at the model's input size (random resized crop, flip, ``cfg.randaug``)."""
    dc = model_data_config(model)
    return timm.data.create_transform(
        input_size=dc["input_size"], is_training=True, auto_augment=cfg.randaug or None,
        interpolation=dc["interpolation"], mean=dc["mean"], std=dc["std"],
    )


@torch.no_grad()
def evaluate(model: nn.Module, data: LabelledSet, batch_size: int, device: torch.device,
             workers: int | None = None) -> float:
    """Top-1 accuracy of the model's own head on ``data``."""
    model.eval()
    correct = total = 0
    for batch in iterate(make_loader(data.dataset, batch_size, workers=workers), SkipLog()):
        x = batch.images.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
            check_finite_activations(model, logits, lambda: model(x))
        correct += int((logits.argmax(-1).cpu() == batch.labels).sum())
        total += len(batch.labels)
    if total == 0:
        raise VitscopeError(f"no readable image in '{data.spec}'")
    return correct / total


def prepare(model: nn.Module, num_classes: int, cfg: FinetuneConfig) -> list[int]:
    """New ``num_classes`` head (MAE: truncated normal, std 2e-5), re-init, drop path.

    Returns the re-initialised block indices.
    """
    chosen = parse_reinit(cfg.reinit, len(blocks_of(model)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model.reset_classifier(num_classes)
        nn.init.trunc_normal_(model.head.weight, std=2e-5)
        nn.init.zeros_(model.head.bias)
    reinit_blocks(model, chosen, seed=cfg.seed)
    set_drop_path(model, cfg.drop_path)
    return chosen


def _reseed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def finetune(model: nn.Module, train: LabelledSet, val: LabelledSet, cfg: FinetuneConfig, out_dir: Path, *,
             model_spec: str, device: torch.device, resume: bool = False, workers: int | None = None,
             progress: bool = False) -> dict:
    """Fine-tune ``model`` (head replaced) on ``train``; evaluate on ``val`` after every epoch.

    A checkpoint is saved after every epoch, and on SIGTERM / SIGUSR1 after the current batch
    (then :class:`Stopped` is raised); ``resume`` continues either where it was, to the result of an
    uninterrupted run.

    ``train.dataset`` must use the training transform (:func:`train_transform`). Returns
    ``{"accuracy": final-epoch val accuracy, "history": [...], "reinit_blocks": [...]}``.
    """
    out_dir = Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    chosen = prepare(model, train.num_classes, cfg)
    model.to(device)
    opt = torch.optim.AdamW(layer_decay_param_groups(model, cfg.resolved_lr, cfg.weight_decay, cfg.layer_decay),
                            lr=cfg.resolved_lr, betas=(0.9, 0.999))
    history: list[dict] = []
    start = 0
    state: dict[str, Any] = {}  # the checkpoint resumed from
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT or state.get("config") != asdict(cfg):
            raise VitscopeError(f"{ckpt_path} was written by a different fine-tuning configuration; "
                                "use another --out or the same options")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, history = int(state["epoch"]), list(state["history"])
        log.info("resuming fine-tuning from %s at epoch %d", ckpt_path, start)
    elif ckpt_path.is_file():
        raise VitscopeError(f"{ckpt_path} exists: pass --resume to continue it, or choose another --out")

    mix = timm.data.Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.smoothing,
                          num_classes=train.num_classes) if cfg.mixing else None
    criterion: nn.Module = (SoftTargetCrossEntropy() if mix else
                            LabelSmoothingCrossEntropy(cfg.smoothing) if cfg.smoothing > 0 else nn.CrossEntropyLoss())
    bs = min(cfg.batch_size, len(train))
    steps = max(1, len(train) // bs)
    total, warmup = cfg.epochs * steps, cfg.warmup_epochs * steps
    arch, arch_kwargs = arch_of(model)

    def save(epoch: int, **mid_epoch: Any) -> None:
        """The checkpoint: after ``epoch`` epochs, plus where in the next one a stopped run was."""
        atomic_torch_save({
            "format": CHECKPOINT_FORMAT, "version": 1, "arch": arch, "arch_kwargs": arch_kwargs,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(), "epoch": epoch, "history": history, "config": asdict(cfg),
            "source_model": model_spec, "classes": train.classes, **mid_epoch,
        }, ckpt_path)

    with deferred_stop() as stop_signal, contextlib.ExitStack() as stack:  # the stack closes the progress bars
        for epoch in range(start, cfg.epochs):
            _reseed(cfg.seed + epoch)
            model.train()
            sampler = RandomSampler(train.dataset, generator=torch.Generator().manual_seed(cfg.seed + epoch))
            loader = DataLoader(train.dataset, batch_size=bs, sampler=sampler, drop_last=True, collate_fn=collate,
                                num_workers=workers if workers is not None else min(8, max(0, (os.cpu_count() or 1) - 1)),
                                pin_memory=device.type == "cuda", worker_init_fn=ignore_stop_signals)
            loss_sum, seen = 0.0, 0
            bar = stack.enter_context(tqdm(loader, disable=not progress, desc=f"epoch {epoch + 1}"))
            batches = enumerate(bar)
            if state.get("batches_done"):  # a stopped run: its batches of this epoch are drawn again, not trained on
                for _ in range(state["batches_done"]):
                    next(batches)
                set_rng_state(state["rng"])
                loss_sum, seen = state["loss_sum"], state["seen"]
                state = {}
            for i, batch in batches:
                lr = warmup_cosine(epoch * steps + i, total, warmup, cfg.resolved_lr, cfg.min_lr)
                for g in opt.param_groups:
                    g["lr"] = lr * g.get("lr_scale", 1.0)
                x, y = batch.images, batch.labels
                if mix is not None and len(x) % 2:  # timm's Mixup needs an even batch
                    x, y = x[:-1], y[:-1]
                if len(x) < 2:
                    continue
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if mix is not None:
                    x, y = mix(x, y)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    logits = model(x)
                    check_finite_activations(model, logits, lambda: model(x))
                    loss = criterion(logits, y)
                if not torch.isfinite(loss):
                    raise VitscopeError(f"fine-tuning loss is {loss.item()} at epoch {epoch + 1}: lower --lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                opt.step()
                loss_sum += loss.item() * len(x)
                seen += len(x)
                if signum := stop_signal():
                    save(epoch, batches_done=i + 1, rng=rng_state(), loss_sum=loss_sum, seen=seen)
                    raise Stopped(signum, f"stopped by {signal.Signals(signum).name} in epoch {epoch + 1} after batch "
                                          f"{i + 1} of {steps}; checkpoint saved to {ckpt_path}; continue with the "
                                          f"same command and --resume")
            acc = evaluate(model, val, bs, device, workers)
            history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen), "val_accuracy": acc})
            log.info("epoch %d/%d: train loss %.4f, val accuracy %.4f", epoch + 1, cfg.epochs, history[-1]["train_loss"], acc)
            save(epoch + 1)
    return {"accuracy": history[-1]["val_accuracy"], "history": history, "reinit_blocks": chosen,
            "config": {**asdict(cfg), "lr": cfg.resolved_lr}, "checkpoint": str(ckpt_path)}

