"""The pretraining loop: one function, :func:`train`, from a resolved config to checkpoints.

Per step: take this process's uint8 batch (resident on the device or streamed), make the
method's views on the device, run the objective under bf16 autocast (CUDA; fp32 on CPU),
step fused AdamW (CUDA) with warmup + cosine learning rate and optional gradient clipping,
update MoCo's momentum encoder. Loss sums stay on the device and are read only every
``log_every`` steps (the only host syncs), when a line goes to ``log.jsonl``, TensorBoard
(if installed) and the progress bar (with img/s).

Reproducibility: the data order depends on (seed, epoch) and every augmentation / mask
draw on (seed, step) only (:class:`~vitscope.train.augment.BatchRandom`); the global
generators (dropout, drop-path) are saved in the checkpoint. A run resumed from its last
checkpoint therefore ends where an uninterrupted run would, and K processes with a global
batch B compute what one process with batch B does.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import timm.data
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

import vitscope.models  # noqa: F401  (registers the small-image ViTs)
from vitscope.errors import Stopped, VitscopeError
from vitscope.models.checkpoints import evaluated_encoder
from vitscope.models.loader import create_timm, load
from vitscope.results import PRETRAIN, ensure_dir, provenance, write_atomic, write_results
from vitscope.runlog import read_log, training_summary
from vitscope.stopping import deferred_stop
from vitscope.train import checkpoint
from vitscope.train.augment import BatchRandom
from vitscope.train.config import PretrainConfig, apply_overrides, lr_at, momentum_at, resolve, run_keys, weight_decay_at
from vitscope.train.dino import DINO
from vitscope.train.distributed import Dist, mean_over_processes, setup, teardown
from vitscope.train.encoder import ViTEncoder, xavier_patch_embed
from vitscope.train.gpu_data import open_training_images
from vitscope.train.hybrid import Hybrid, gradient_cosines
from vitscope.train.mae import MAE
from vitscope.train.moco import MoCoV3
from vitscope.train.simmim import SimMIM

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
SUMMARY = "pretrain.json"  # written when the run ends: its config, log and wall time (vitscope.read)


def build_vit(spec: str, *, seed: int, drop_path: float = 0.0, kwargs: dict[str, Any] | None = None,
              frozen_patch_embed: bool = False) -> tuple[nn.Module, str]:
    """A timm ViT and its architecture name from ``NAME``/``random:NAME`` (fresh, created with
    ``kwargs``; a patch embedding to be frozen gets MoCo v3's init), ``timm:NAME``
    (pretrained) or a checkpoint file, ``PATH`` or ``PATH@ARCH`` (continued)."""
    name = spec.removeprefix("random:")
    if ":" not in name and "@" not in name and not Path(name).exists():  # timm names hold no "@"
        torch.manual_seed(seed)
        vit = create_timm(name, pretrained=False, drop_path_rate=drop_path, **(kwargs or {}))
        if frozen_patch_embed:
            xavier_patch_embed(vit)
    else:
        if drop_path or kwargs:
            raise VitscopeError(f"drop_path and model_kwargs apply to fresh models only, not '{spec}'")
        vit = load(spec, seed=seed)
    arch = (getattr(vit, "pretrained_cfg", None) or {}).get("architecture") or name
    return vit.train(), arch


def build_objective(cfg: PretrainConfig, encoder: ViTEncoder) -> nn.Module:
    """The method's objective module around ``encoder`` (``cfg`` resolved)."""
    def moco() -> MoCoV3:
        return MoCoV3(encoder, dim=cfg.moco_dim, mlp_dim=cfg.moco_mlp_dim, temperature=cfg.moco_t,
                      crop_min=cfg.crop_min)

    def mim(kind: str) -> SimMIM | MAE:
        assert cfg.mask_ratio is not None
        if kind == "simmim":
            return SimMIM(encoder, mask_ratio=cfg.mask_ratio, mask_patch_size=cfg.mask_patch_size)
        return MAE(encoder, mask_ratio=cfg.mask_ratio, decoder_dim=cfg.decoder_dim, decoder_depth=cfg.decoder_depth,
                   decoder_heads=cfg.decoder_heads, norm_pix_loss=cfg.norm_pix_loss)

    if cfg.method == "moco":
        return moco()
    if cfg.method == "dino":
        assert cfg.dino_global_crop_min is not None
        return DINO(encoder, out_dim=cfg.dino_out_dim, hidden_dim=cfg.dino_hidden_dim,
                    bottleneck_dim=cfg.dino_bottleneck_dim, student_temp=cfg.dino_student_temp,
                    teacher_temp=cfg.dino_teacher_temp, warmup_teacher_temp=cfg.dino_warmup_teacher_temp,
                    warmup_teacher_temp_epochs=cfg.dino_warmup_teacher_temp_epochs, center_momentum=cfg.dino_center_m,
                    freeze_last_layer=cfg.dino_freeze_last_layer, norm_last_layer=cfg.dino_norm_last_layer,
                    centering=cfg.dino_centering, sinkhorn_iterations=cfg.dino_sinkhorn_iterations,
                    koleo_weight=cfg.dino_koleo,
                    global_scale=(cfg.dino_global_crop_min, 1.0),
                    local_crops=cfg.local_crops, local_size=cfg.local_crop_size)
    if cfg.method == "hybrid":
        return Hybrid(moco(), mim(cfg.mim), cfg.lam)
    return mim(cfg.method)


def param_groups(module: nn.Module, weight_decay: float, own: tuple[nn.Parameter, ...] = ()
                 ) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices, none on biases, norms, tokens and position embeddings;
    the parameters ``own`` (DINO's last layer) in a third group of their own, with weight decay."""
    decay, no_decay = [], []
    mine = {id(p) for p in own}
    for name, p in module.named_parameters():
        if not p.requires_grad or id(p) in mine:
            continue
        skip = p.ndim <= 1 or name.endswith(("cls_token", "reg_token", "mask_token", "pos_embed"))
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return groups + ([{"params": list(own), "weight_decay": weight_decay}] if own else [])


class RunLog:
    """``log.jsonl`` (+ TensorBoard when installed) on the main process."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, keep_until_step: int) -> None:
        self.path = out / "log.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if self.path.exists():  # resumed or restarted: drop the lines of lost work (and a torn last line)
            kept = [ln for ln in self.path.read_text().splitlines() if _step_of(ln) <= keep_until_step]
            self.path.write_text("".join(ln + "\n" for ln in kept))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tb"))
            except ImportError:
                log.info("tensorboard is not installed: logging to %s only", self.path)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, float) and k != "time":
                    self.writer.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _step_of(line: str) -> float:
    """The step of a log line; infinity for a line that is not a complete JSON record."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


def _write_json(path: Path, text: str) -> None:
    write_atomic(path, text.encode())


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Objective, optimiser and step of one process; :meth:`step` is one training step, no host sync."""

    def __init__(self, cfg: PretrainConfig, d: Dist) -> None:
        self.cfg, self.d = cfg, d
        vit, self.arch = build_vit(cfg.model, seed=cfg.seed, drop_path=cfg.drop_path, kwargs=cfg.model_kwargs,
                                   frozen_patch_embed=bool(cfg.frozen_patch_embed))
        data_cfg = timm.data.resolve_model_data_config(vit)
        self.encoder = ViTEncoder(vit, local_attention=cfg.local_attention, sincos_pos=cfg.sincos_pos,
                                  frozen_patch_embed=bool(cfg.frozen_patch_embed))
        self.objective = build_objective(cfg, self.encoder).to(d.device)
        self.mean = torch.tensor(data_cfg["mean"], device=d.device)
        self.std = torch.tensor(data_cfg["std"], device=d.device)
        cuda = d.device.type == "cuda"
        last_layer = tuple(self.objective.head.last_layer()) if isinstance(self.objective, DINO) else ()
        #: per optimiser group: (lr factor, weight decay on?); DINO's last layer is the third group
        self.group_rules = [(1.0, True), (1.0, False)] + [(cfg.dino_last_layer_lr, cfg.dino_last_layer_decay)] * bool(
            last_layer)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.objective, float(cfg.weight_decay or 0.0), last_layer), lr=float(cfg.lr or 0.0),
            betas=(0.9, float(cfg.beta2 or 0.999)), **({"fused": True} if cuda else {}))
        model: nn.Module = self.objective
        if d.world > 1:
            model = nn.parallel.DistributedDataParallel(self.objective, device_ids=[d.device.index] if cuda else None)
        self.model = torch.compile(model) if cfg.compile else model
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
        self.autocast = (lambda: torch.autocast(d.device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
        self.groups = self.encoder.block_groups() if isinstance(self.objective, Hybrid) else {}
        self.momentum = cfg.dino_m if cfg.method == "dino" else cfg.moco_m

    def load_state(self, state: dict[str, Any]) -> None:
        self.objective.load_state_dict(state["objective"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as e:  # e.g. a DINO run saved before its last layer had a group of its own
            raise VitscopeError(f"the checkpoint's optimiser state does not fit this run's parameter groups ({e}); "
                                "it was saved by another version of vitscope: start a new run") from e
        checkpoint.set_rng_state(state["rng"])

    def state(self, epoch: int, step: int) -> dict[str, Any]:
        """Everything a checkpoint holds (vitscope format + training state)."""
        on_cpu: dict[int, torch.Tensor] = {}  # one CPU copy per tensor: shared modules stored once

        def cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            for v in sd.values():
                if id(v) not in on_cpu:
                    on_cpu[id(v)] = v.detach().cpu()
            return {k: on_cpu[id(v)] for k, v in sd.items()}

        return {
            "arch": self.arch,
            "arch_kwargs": {**self.cfg.model_kwargs, "num_classes": 0},
            "model": cpu(self.encoder.vit.state_dict(keep_vars=True)),
            "objective": cpu(self.objective.state_dict(keep_vars=True)),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "step": step,
            "rng": checkpoint.rng_state(),
            "config": asdict(self.cfg),
        }

    def snapshot(self, out: Path, step: int, epoch: float) -> None:
        """The encoder after ``step`` steps as ``snapshots/step-NNNNNN.safetensors`` (fp16; a DINO run's
        teacher, the network ``vitscope.load`` takes from its checkpoint)."""
        weights = evaluated_encoder({"config": {"method": self.cfg.method}, "model": self.encoder.vit.state_dict(),
                                     "objective": self.objective.state_dict()})
        checkpoint.save_snapshot(checkpoint.snapshot_path(out, step), weights, self.arch,
                                 {**self.cfg.model_kwargs, "num_classes": 0}, method=self.cfg.method, step=step,
                                 epoch=epoch)

    def step(self, images: torch.Tensor, step: int, steps_per_epoch: int
             ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """One step on this process's uint8 ``images``: (detached outputs, gradient cosines if measured)."""
        cfg, d = self.cfg, self.d
        lo = d.rank * (cfg.batch_size // d.world)
        rnd = BatchRandom(cfg.seed, step, cfg.batch_size, lo, lo + len(images), d.device)
        total = cfg.epochs * steps_per_epoch
        lr, wd = lr_at(step, steps_per_epoch, cfg), weight_decay_at(step, total, cfg)
        for g, (factor, decay) in zip(self.optimizer.param_groups, self.group_rules):
            g["lr"], g["weight_decay"] = lr * factor, wd if decay else 0.0
        if hasattr(self.objective, "update_momentum"):
            self.objective.update_momentum(momentum_at(step, total, self.momentum))
        if hasattr(self.objective, "set_epoch"):
            self.objective.set_epoch(step / steps_per_epoch)
        with torch.no_grad():
            views = self.objective.make_views(images, rnd, self.mean, self.std)
        with self.autocast():
            outputs = self.model(*views)
        cos = {}
        if self.groups and step % cfg.grad_cos_every == 0:
            measured = gradient_cosines(outputs["loss_mim"], outputs["loss_cl"], self.groups)
            cos = {f"grad_cos/{k}": float(v) for k, v in measured.items()}
        self.optimizer.zero_grad(set_to_none=True)
        outputs["loss"].backward()
        if hasattr(self.objective, "cancel_gradients"):
            self.objective.cancel_gradients()
        if cfg.clip_grad:
            nn.utils.clip_grad_norm_(self.objective.parameters(), cfg.clip_grad)
        self.optimizer.step()
        return {k: v.detach() for k, v in outputs.items()}, cos


def _stop_signal(stop_signal: Callable[[], int], d: Dist, step: int, every: int) -> int:
    """The stop signal (SIGTERM, SIGUSR1) that came, else 0. Under DDP all processes must stop at
    the same step, so they agree every ``every`` steps, at the log's host sync (one all-reduce)."""
    if d.world == 1:
        return stop_signal()
    if step % every:
        return 0
    agreed = torch.tensor([stop_signal()], device=d.device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
    return int(agreed.item())


def _stop(trainer: Trainer, d: Dist, epoch: int, step: int, path: Path, signum: int) -> NoReturn:
    """Save the state after ``step`` (mid-epoch ``epoch``) to ``path`` and raise :class:`Stopped`."""
    if d.main:
        checkpoint.save(path, trainer.state(epoch, step))
    teardown()
    raise Stopped(signum, f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint saved to {path}; "
                          f"continue with: vitscope pretrain --resume --out {path.parent}")


def train(cfg: PretrainConfig, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Pretrain as ``cfg`` says (see module docstring); returns the last logged record. ``progress``:
    a progress bar on the main process. When the run ends, the main process writes ``pretrain.json``
    (kind ``vitscope-pretrain``: the resolved config, the log records, steps, wall time and first /
    last loss) beside ``config.json``, ``log.jsonl`` and ``checkpoint.pt``."""
    d: Dist = setup(cfg.device)
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    state = None
    if resume and not ckpt_path.is_file():  # killed before its first checkpoint: start over
        log.warning("--resume: no %s in %s yet, starting from the beginning", CHECKPOINT, out)
    elif resume:
        state = checkpoint.load(ckpt_path)
        saved = resolve(apply_overrides(PretrainConfig(), state["config"], f"the config saved in {ckpt_path}"))
        if run_keys(resolve(cfg)) != run_keys(saved):
            raise VitscopeError(f"--resume: the settings differ from those saved in {ckpt_path}")
    elif ckpt_path.exists():
        raise VitscopeError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out")
    cfg = resolve(cfg)
    _seed_all(cfg.seed)
    trainer = Trainer(cfg, d)
    data = open_training_images(
        cfg.data, d.device, batch_size=cfg.batch_size, rank=d.rank, world=d.world, seed=cfg.seed,
        num_images=cfg.num_images, on_device=cfg.data_on_device,
        load_size=cfg.load_size or round(trainer.encoder.img_size * 8 / 7), workers=cfg.workers)
    spe = data.steps_per_epoch
    total = cfg.epochs * spe
    start_epoch, step = 0, 0
    if state is not None:
        trainer.load_state(state)
        start_epoch, step = int(state["epoch"]), int(state["step"])
    if d.main:
        ensure_dir(out)
        _write_json(out / "config.json", cfg.to_json())
    runlog = RunLog(out, d.main, cfg.tensorboard, keep_until_step=step)
    sums: dict[str, torch.Tensor] = {}
    extra: dict[str, float] = {}
    count, tick, last = 0, time.perf_counter(), {}
    snapshot = d.main and cfg.snapshot_every > 0
    if snapshot and step == 0:  # the initialisation
        trainer.snapshot(out, 0, 0.0)
    with tqdm(total=total, initial=step, disable=not (d.main and progress), unit="step", dynamic_ncols=True) as bar, \
            deferred_stop() as stop_signal:
        for epoch in range(start_epoch, cfg.epochs):
            for images in islice(data.epoch(epoch), step - epoch * spe, None):  # a stopped run resumes mid-epoch
                outputs, cos = trainer.step(images, step, spe)
                extra.update(cos)
                for k, v in outputs.items():
                    sums[k] = sums.get(k, 0) + v.float()
                count += 1
                step += 1
                bar.update(1)
                if snapshot and (step % cfg.snapshot_every == 0 or step == total):
                    trainer.snapshot(out, step, step / spe)
                if step % cfg.log_every == 0 or step == total:
                    means = {k: float(mean_over_processes(v / count)) for k, v in sums.items()}
                    now = time.perf_counter()
                    ips = count * cfg.batch_size / (now - tick)
                    last = {"step": step, "epoch": step / spe, "lr": lr_at(step - 1, spe, cfg), **means,
                            "img_per_s": ips, **extra, "time": time.time()}
                    runlog.write(last)
                    bar.set_postfix(loss=f"{means['loss']:.4f}", img_s=f"{ips:,.0f}")
                    sums, extra, count, tick = {}, {}, 0, now
                signum = _stop_signal(stop_signal, d, step, cfg.log_every)
                if signum:
                    _stop(trainer, d, epoch, step, ckpt_path, signum)
            done = epoch + 1
            save = done % cfg.save_every == 0 or done == cfg.epochs
            keep = bool(cfg.keep_every) and done % cfg.keep_every == 0
            if (save or keep) and d.main:
                st = trainer.state(done, step)
                if save:
                    checkpoint.save(ckpt_path, st)
                if keep:
                    checkpoint.save(out / f"checkpoint-epoch{done}.pt", st)
            if (save or keep) and d.world > 1:
                dist.barrier()
    runlog.close()
    if d.main:
        write_results(out / SUMMARY, {
            "kind": PRETRAIN, "config": asdict(cfg), "training": training_summary(out), "log": read_log(out),
            "checkpoint": CHECKPOINT, "provenance": provenance(out=str(out))})
    teardown()  # every process may read the summary now; the process group is left cleanly
    return last
