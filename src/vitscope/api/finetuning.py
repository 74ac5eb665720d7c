"""``vitscope.finetune``: fine-tune a ViT end to end on labelled images (Park et al. Table A.1, Fig. F.3)."""

from __future__ import annotations

from pathlib import Path

from vitscope.api.inputs import DataLike, ModelLike
from vitscope.api.result import PathLike
from vitscope.api.results import Finetune
from vitscope.eval.finetune_config import FinetuneConfig
from vitscope.results import check_output_folder

_D = FinetuneConfig()


def finetune(
    model: ModelLike, train: DataLike, val: DataLike, *, out: PathLike, images: int | None = None,
    val_images: int | None = None, epochs: int = _D.epochs, batch_size: int = _D.batch_size,
    lr: float | None = None, weight_decay: float = _D.weight_decay, layer_decay: float = _D.layer_decay,
    warmup_epochs: int = _D.warmup_epochs, mixup: float = _D.mixup, cutmix: float = _D.cutmix,
    smoothing: float = _D.smoothing, drop_path: float = _D.drop_path, clip_grad: float = _D.clip_grad,
    randaug: str = _D.randaug, reinit: str = "", resume: bool = False, device: str = "auto",
    workers: int | None = None, seed: int = 0, progress: bool = True,
) -> Finetune:
    """Fine-tune ``model`` (a new head for ``train``'s classes) end to end; score ``val`` after every epoch.

    The recipe of Park et al. Table A.1 (after SimMIM), epochs scaled down: AdamW with
    lr = 1.25e-3 × ``batch_size`` / 512 unless ``lr`` is given, layer-wise lr decay d (block i of
    L gets lr·d^(L−i)), linear warm-up then cosine, RandAugment, mixup / CutMix, label smoothing,
    stochastic depth, gradient clipping. ``reinit``: ``first:K`` or ``last:K`` re-initialises
    blocks first (Fig. F.3). ``out`` (required) receives ``checkpoint.pt`` after every epoch, from
    which ``resume`` continues, and ``finetune.json``. A model in memory is copied, not changed;
    load the fine-tuned one with ``vitscope.load(out / "checkpoint.pt")``.

    >>> f = vitscope.finetune("zoo:simmim-cifar10", "cifar10:train", "cifar10:test", out="ft", epochs=10)
    >>> f.to_frame().query("quantity == 'val_accuracy'")
    """
    from vitscope.eval.finetune_run import run_finetune_job

    folder = check_output_folder(Path(out))
    cfg = FinetuneConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         layer_decay=layer_decay, warmup_epochs=warmup_epochs, mixup=mixup, cutmix=cutmix,
                         smoothing=smoothing, drop_path=drop_path, clip_grad=clip_grad, randaug=randaug,
                         reinit=reinit, seed=seed)
    results = run_finetune_job(model, train, val, folder, cfg, images=images, val_images=val_images,
                               device=device, resume=resume, workers=workers, progress=progress)
    return Finetune(results, folder=folder)
