"""``vitscope finetune`` from its inputs to ``finetune.json``: one code path for the command and the API.

:func:`run_finetune_job` loads the model (a spec, or a ViT in memory, which is copied so that the
caller's model keeps its weights and head), opens the labelled data with the fine-tuning
augmentations (:func:`~vitscope.eval.finetune.train_transform`) and the model's own evaluation
transform, checks that both sets have the same classes, runs :func:`~vitscope.eval.finetune.finetune`
and writes ``finetune.json`` (accuracy, history, the command's wall time and provenance) next to
``checkpoint.pt``.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from torch import nn

from vitscope.data import model_transform
from vitscope.data.sources import DataSource
from vitscope.eval.finetune import finetune, train_transform
from vitscope.eval.finetune_config import FinetuneConfig
from vitscope.eval.labelled import check_same_classes, open_labelled
from vitscope.models import as_vit, spec_of
from vitscope.results import FINETUNE, provenance, write_results
from vitscope.runtime import resolve_device


def run_finetune_job(model: str | nn.Module, train_data: DataSource, val_data: DataSource, out: Path,
                     cfg: FinetuneConfig, *, images: int | None = None, val_images: int | None = None,
                     device: str = "auto", resume: bool = False, workers: int | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``model`` on ``train_data``, scored on ``val_data`` after every epoch; returns the
    content of the ``finetune.json`` written to ``out`` (with ``checkpoint.pt``)."""
    net = as_vit(model, seed=cfg.seed)
    if isinstance(model, nn.Module):
        net = copy.deepcopy(net)  # fine-tuning replaces the head and trains the weights in place
    train = open_labelled(train_data, train_transform(net, cfg), images, cfg.seed)
    val = open_labelled(val_data, model_transform(net), val_images, cfg.seed)
    check_same_classes(train, val)
    dev = resolve_device(device)
    start = time.perf_counter()
    spec = spec_of(model)
    results = finetune(net, train, val, cfg, out, model_spec=spec, device=dev, resume=resume,
                       workers=workers, progress=progress)
    results["seconds"] = round(time.perf_counter() - start, 1)  # of this call (a resumed run: its last piece)
    results["provenance"] = provenance(model=spec, train_data=train.spec, val_data=val.spec,
                                       train_images=len(train), val_images=len(val), seed=cfg.seed, device=str(dev))
    results = {"kind": FINETUNE, **results}
    write_results(out / "finetune.json", results)
    return results
