"""The model zoo: encoders vitscope trained itself, shipped with the package (``zoo:NAME``).

Each entry is an fp16 ``.safetensors`` file of a timm ViT encoder (no head) plus one line
of ``manifest.json``: method, architecture, data, epochs, recipe, wall time, hardware,
linear-probe and 20-NN accuracy and the file's sha256, which is checked on every load, so
a damaged or replaced file is a one-line error instead of silently wrong numbers.

The zoo folder is ``src/vitscope/zoo_models/`` (package data); ``$VITSCOPE_ZOO`` points
elsewhere (a folder with the same layout, e.g. GPU-trained models under the same names).
:func:`add_entry` writes an entry from a ``vitscope pretrain`` run, or from a ``vitscope finetune``
run of a zoo model (its encoder after fine-tuning, e.g. for Shekhar et al. Fig. 5), with ``vitscope zoo add``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from vitscope.errors import VitscopeError
from vitscope.models.checkpoints import encoder_safetensors, evaluated_encoder, load_strict, read_checkpoint
from vitscope.models.converters import VITSCOPE_FORMAT
from vitscope.models.timm_factory import create_timm
from vitscope.runlog import training_summary
from vitscope.results import FINETUNE, PROBE, probe_accuracies, read_results, write_atomic, write_json
from vitscope.zoo_manifest import MANIFEST, manifest, zoo_dir


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def entry(name: str, folder: Path | None = None) -> dict[str, Any]:
    """The manifest entry of ``name``; unknown names list the known ones."""
    models = manifest(folder)
    if name not in models:
        known = ", ".join(sorted(models)) or "none (the zoo folder has no manifest)"
        raise VitscopeError(f"the zoo has no model '{name}'. Valid options are: {known}")
    return models[name]


def zoo_file(name: str, folder: Path | None = None) -> Path:
    """The weights file of ``name``, its sha256 checked against the manifest."""
    folder = folder or zoo_dir()
    e = entry(name, folder)
    path = folder / e["file"]
    if not path.is_file():
        raise VitscopeError(f"zoo model '{name}': weights file {path} is missing")
    digest = sha256(path)
    if digest != e["sha256"]:
        raise VitscopeError(f"zoo model '{name}': {path} is damaged (sha256 {digest[:12]}…, "
                            f"manifest says {e['sha256'][:12]}…); reinstall vitscope or restore the file")
    return path


def load_zoo(name: str, folder: Path | None = None) -> nn.Module:
    """The zoo model ``name`` as an fp32 timm ViT (architecture from the manifest, weights checked)."""
    e = entry(name, folder)
    path = zoo_file(name, folder)
    state = {k: v.float() for k, v in read_checkpoint(path).items()}
    model = create_timm(e["arch"], pretrained=False, **e.get("arch_kwargs", {}))
    load_strict(model, state, f"zoo model '{name}' ({path})")
    return model


def _last(values: list[float] | None) -> float | None:
    return float(values[-1]) if values else None


def _probe_accuracy(probe: Mapping[str, Any], feature: str) -> dict[str, Any]:
    """Last-block and best-block accuracies of a ``probe.json`` for one token feature."""
    prov = probe.get("provenance") or {}
    out: dict[str, Any] = {"feature": feature, **{k: prov[k] for k in ("train_data", "val_data", "train_images",
                                                                        "val_images") if k in prov}}
    for method, by_feature in probe_accuracies(dict(probe)).items():
        per_block = by_feature.get(feature)
        if per_block:
            out[f"{method}_last_block"] = _last(per_block)
            out[f"{method}_best_block"] = int(max(range(len(per_block)), key=per_block.__getitem__)) + 1
            out[f"{method}_best"] = float(max(per_block))
            out[f"{method}_per_block"] = [float(v) for v in per_block]
    return out


def finetune_summary(run: Path, ckpt: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """What a zoo entry says of a ``vitscope finetune`` run of a zoo model: ``method`` (the source's,
    fine-tuned), ``source`` (its spec), ``arch_kwargs`` (the source's: the same encoder),
    ``recipe`` (the fine-tuning config) and ``training`` (epochs, wall time of the command that
    finished it, first and last training loss, validation accuracy)."""
    ft = read_results(run / "finetune.json", kind=FINETUNE)
    source = str(ckpt.get("source_model") or (ft.get("provenance") or {}).get("model"))
    if not source.startswith("zoo:"):
        raise VitscopeError(f"{run} fine-tuned {source}: the zoo takes fine-tuned zoo models only")
    history = ft["history"]
    prov = ft.get("provenance") or {}
    src = entry(source.removeprefix("zoo:"), folder)
    return {"method": f"{src['method']}, fine-tuned", "source": source, "arch_kwargs": dict(src["arch_kwargs"]),
            "recipe": {k: v for k, v in sorted(dict(ckpt["config"]).items())},
            "training": {"epochs": len(history), "wall_seconds": ft.get("seconds"), "loss_first": history[0]["train_loss"],
                         "loss_last": history[-1]["train_loss"], "val_accuracy": ft["accuracy"],
                         **{k: prov[k] for k in ("train_data", "val_data", "train_images", "val_images") if k in prov}}}


def add_entry(name: str, run: Path, *, probe: Path | None, hardware: str, budget: str, data: str,
              feature: str = "cls", folder: Path | None = None, note: str = "") -> dict[str, Any]:
    """Add (or replace) zoo model ``name`` from the run folder ``run``: a ``vitscope pretrain`` run,
    or a ``vitscope finetune`` run of a zoo model (it holds ``finetune.json``).

    Writes ``NAME.safetensors`` (the encoder in fp16, no classifier head; a DINO run's teacher, see
    :func:`~vitscope.models.checkpoints.evaluated_encoder`) and updates the
    manifest with the run's recipe (its resolved ``config.json``, or the fine-tuning config),
    training summary and, when ``probe`` (a ``vitscope probe`` output folder) is given, its accuracies.
    """
    folder = folder or zoo_dir()
    ckpt = read_checkpoint(run / "checkpoint.pt")
    if ckpt.get("format") != VITSCOPE_FORMAT or "model" not in ckpt or "config" not in ckpt:
        raise VitscopeError(f"{run}/checkpoint.pt is not a vitscope pretraining or fine-tuning checkpoint")
    cfg = dict(ckpt["config"])
    finetuned = finetune_summary(run, ckpt, folder) if (run / "finetune.json").is_file() else None
    accuracy = _probe_accuracy(read_results(probe / "probe.json", kind=PROBE), feature) if probe else {}
    if finetuned:
        method = finetuned["method"]
    else:
        method = cfg["method"] + (f" (lambda={cfg['lam']})" if cfg["method"] == "hybrid" else "")
    arch_kwargs = finetuned.pop("arch_kwargs") if finetuned else dict(ckpt.get("arch_kwargs") or {})
    arch_kwargs["num_classes"] = 0  # the encoder: no head
    blob = encoder_safetensors(evaluated_encoder(ckpt), str(ckpt["arch"]), arch_kwargs,  # a DINO run: its teacher
                               method=method)
    file = f"{name}.safetensors"
    write_atomic(folder / file, blob)
    kw = ", ".join(f"{k}={v}" for k, v in arch_kwargs.items() if k != "num_classes")
    e = {
        "file": file, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob),
        "method": method, "arch": str(ckpt["arch"]), "arch_kwargs": arch_kwargs,
        "architecture": f"{ckpt['arch']}({kw})" if kw else str(ckpt["arch"]),
        "data": data, "epochs": int(ckpt["epoch"]), "epochs_planned": int(cfg["epochs"]), "budget": budget,
        "hardware": hardware,
        "recipe": {k: cfg[k] for k in sorted(cfg) if k not in ("out", "device", "workers", "tensorboard",
                                                                "log_every", "save_every", "keep_every",
                                                                "snapshot_every")},
        "training": training_summary(run, int(ckpt["step"])) if not finetuned else {},
        "accuracy": accuracy,
        "note": note,
        **(finetuned or {}),
    }
    path = folder / MANIFEST
    models = manifest(folder)
    models[name] = e
    write_json(path, {"about": "vitscope model zoo: encoders trained with `vitscope pretrain`; "
                               "load with the model spec zoo:NAME",
                      "models": dict(sorted(models.items()))})
    return e
