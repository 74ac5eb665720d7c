"""Properties along training: the one-pass analysis (:mod:`vitscope.analysis`) of every snapshot of a
run, on the same images (the engine of ``vitscope trajectory``).

snapshots (a run's ``snapshots/step-NNNNNN.safetensors``, or checkpoint files) ──► for each, in step
order: load ──► :func:`~vitscope.analysis.analyze_model` (one streaming pass) ──► one entry of
``trajectory.json`` (kind ``vitscope-trajectory``), written after every snapshot.

Each entry holds the snapshot's path, step and epoch and the ``metrics`` of an analysis
``results.json``: the numbers ``vitscope analyze`` gives for that snapshot alone, on the same seeded
subset of images; with a k-NN bank, also ``probe``: the weighted 20-NN accuracy of every block's CLS
token (GAP without a CLS token) of those images against the bank, in the layout of a ``probe.json``
(the numbers ``vitscope probe --no-linear`` gives; Shekhar et al. Fig. 3).

Resumable: entries already in ``trajectory.json`` (same settings) are kept and their
snapshots skipped. Bad input stops with one line (:class:`VitscopeError`) and keeps the entries
written so far: no snapshot found, a snapshot that fails to load, a snapshot of another architecture.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vitscope.analysis import analyze_model, model_summary
from vitscope.choices import KNN_K, KNN_TEMPERATURE
from vitscope.data.sources import DataSource, describe_data
from vitscope.data.transforms import model_transform
from vitscope.errors import VitscopeError
from vitscope.eval.features import extract_features
from vitscope.eval.knn import knn_accuracy_per_block
from vitscope.eval.labelled import check_same_classes, open_labelled
from vitscope.models.checkpoints import safetensors_metadata
from vitscope.models.loader import load
from vitscope.results import TRAJECTORY, provenance, read_results, to_plain
from vitscope.runlog import LOG, read_log

log = logging.getLogger("vitscope")

SNAPSHOT_FOLDER = "snapshots"  # as train.checkpoint.SNAPSHOTS writes it
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".tar", ".bin")
#: What makes two snapshots one architecture (the analysis's token layout and the model class).
ARCHITECTURE_KEYS = ("class", "depth", "num_heads", "embed_dim", "num_prefix_tokens", "grid_size", "patch_size")
#: Settings that decide the numbers: a ``trajectory.json`` made with others is not resumed.
SETTINGS_KEYS = ("data", "images", "seed", "metrics", "precision", "knn")


@dataclass(frozen=True)
class Snapshot:
    """One model along a run: its file, its training step (None when unknown) and epoch; ``ordinal``:
    the step is only the snapshot's position in the order given."""

    path: Path
    step: int | None
    epoch: float | None = None
    ordinal: bool = False


def vitscope_checkpoint_step(path: Path) -> tuple[int, float] | None:
    """Step and epoch of a ``vitscope pretrain`` checkpoint (``checkpoint.pt``, ``checkpoint-epochN.pt``),
    read without loading its tensors (``torch.load(mmap=True)``); None for any other file."""
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # noqa: BLE001 - not a zip-format torch file, or not weights-only: not ours
        return None
    if isinstance(state, dict) and state.get("format") == "vitscope-checkpoint" and "step" in state:
        return int(state["step"]), float(state.get("epoch", 0))
    return None


def snapshot_of(path: Path) -> Snapshot:
    """The step and epoch of checkpoint ``path``: from a snapshot's metadata, a vitscope checkpoint's
    own step, or ``step-N`` in its name; else unknown (a file that cannot be read fails later, when it
    is loaded)."""
    try:
        meta = safetensors_metadata(path) if path.suffix == ".safetensors" else {}
    except VitscopeError:  # unreadable: its name tells the step, loading it will say what is wrong
        meta = {}
    if "step" in meta:
        return Snapshot(path, int(meta["step"]), float(meta["epoch"]) if "epoch" in meta else None)
    own = vitscope_checkpoint_step(path) if path.suffix in (".pt", ".pth") else None
    if own is not None:
        return Snapshot(path, *own)
    found = re.search(r"step-?(\d+)", path.name)
    return Snapshot(path, int(found.group(1)) if found else None)


def find_snapshots(sources: Sequence[str | Path]) -> tuple[list[Snapshot], Path | None]:
    """The snapshots ``sources`` name, and the run folder whose training log goes with them (or None).

    A source is a ``vitscope pretrain`` run folder (its ``snapshots/``), a folder of checkpoint files,
    or a checkpoint file (``PATH@ARCH`` names its timm architecture, as ``--model`` takes it). When
    every snapshot's step is known they are put in step order; when one is not, all keep the order
    given and are numbered 0, 1, ... (``step`` is then that position). No snapshot at all is one line.
    """
    found: list[Snapshot] = []
    run: Path | None = None
    for source in map(Path, sources):
        if source.is_dir():
            folder = source / SNAPSHOT_FOLDER if (source / SNAPSHOT_FOLDER).is_dir() else source
            if (folder.parent / LOG).is_file() and run is None:
                run = folder.parent
            files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
            if not files:
                raise VitscopeError(f"no snapshots in {source} (*.safetensors or checkpoint files; a pretraining run "
                                    "keeps them with --set snapshot_every=N)")
            found += [snapshot_of(p) for p in files]
        elif source.is_file() or Path(str(source).split("@", 1)[0]).is_file():  # PATH or PATH@ARCH
            found.append(snapshot_of(source))
        else:
            raise VitscopeError(f"{source} is neither a run folder, a folder of snapshots nor a checkpoint file")
    if all(s.step is not None for s in found):
        return sorted(found, key=lambda s: (s.step, str(s.path))), run
    return [Snapshot(s.path, i, ordinal=True) for i, s in enumerate(found)], run


def training_loss(run: Path | None) -> list[dict[str, float]]:
    """``[{"step", "epoch", "loss"}]`` of the run's ``log.jsonl`` (empty without a run)."""
    if run is None:
        return []
    return [{"step": r["step"], "epoch": r["epoch"], "loss": r["loss"]} for r in read_log(run)]


def architecture(summary: dict[str, Any]) -> dict[str, Any]:
    """What of a :func:`~vitscope.analysis.model_summary` must agree along a trajectory (as JSON holds it)."""
    return to_plain({k: summary.get(k) for k in ARCHITECTURE_KEYS})


def trajectory_settings(data: DataSource, *, images: int | None, seed: int, metrics: Sequence[str], precision: str,
                        batch_size: int, knn: DataSource | None = None) -> dict[str, Any]:
    """What ``trajectory.json`` records of how its snapshots were analysed (:data:`SETTINGS_KEYS` decide
    the numbers; the batch size does not)."""
    return {"data": describe_data(data), "images": images, "seed": seed, "metrics": list(metrics),
            "precision": precision, "batch_size": batch_size, "knn": None if knn is None else describe_data(knn)}


def knn_probe(model: torch.nn.Module, bank: DataSource, data: DataSource, *, images: int | None, seed: int,
              batch_size: int, device: torch.device, workers: int | None) -> dict[str, Any]:
    """The weighted k-NN accuracy (k = 20, T = 0.07) of every block of ``model``: the labelled ``data``
    (the seeded subset of ``images``) against the labelled ``bank``, on the CLS token (GAP without one),
    as a ``probe.json`` holds it (:func:`vitscope.results.probe_accuracies` reads it)."""
    transform = model_transform(model)
    train, val = open_labelled(bank, transform), open_labelled(data, transform, images, seed)
    check_same_classes(train, val)
    feature = "cls" if model_summary(model)["num_prefix_tokens"] else "gap"
    feats = [extract_features(model, s, (feature,), batch_size=batch_size, device=device, workers=workers)
             for s in (train, val)]
    acc = knn_accuracy_per_block(feats[0].blocks[feature], feats[0].labels, feats[1].blocks[feature],
                                 feats[1].labels, train.num_classes, device=device)
    return {"knn": {"k": KNN_K, "temperature": KNN_TEMPERATURE, "accuracy": {feature: acc.tolist()}},
            "provenance": {"train_data": train.spec, "val_data": val.spec, "train_images": feats[0].num_images,
                           "val_images": feats[1].num_images}}


def previous_entries(path: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The snapshot entries of an existing ``trajectory.json`` made with the same ``settings``; one line
    when it was made with others (its numbers would not compare)."""
    if not path.is_file():
        return []
    old = read_results(path, TRAJECTORY)
    differ = [k for k in SETTINGS_KEYS if old["settings"].get(k) != settings.get(k)]
    if differ:
        raise VitscopeError(f"{path} was made with other settings ({', '.join(differ)}): choose another --out, "
                            "or the same settings to continue it")
    return list(old["snapshots"])


def analyze_snapshots(
    snapshots: Sequence[Snapshot], data: DataSource, *, run: Path | None = None, images: int | None = None,
    batch_size: int = 64, device: torch.device, precision: str = "fp32", metrics: Sequence[str], seed: int = 0,
    workers: int | None = None, progress: bool = True, knn: DataSource | None = None,
    previous: Sequence[dict[str, Any]] = (), saved: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The content of ``trajectory.json``: :func:`~vitscope.analysis.analyze_model` of every snapshot
    (``previous`` entries, by path, are kept and not analysed again), in step order; with a labelled
    ``knn`` bank, also :func:`knn_probe` of each (``data`` labelled too).

    ``saved(results)`` is called after every snapshot with the results so far (the caller writes
    them), and once before a bad snapshot's :class:`VitscopeError` is raised.
    """
    settings = trajectory_settings(data, images=images, seed=seed, metrics=metrics, precision=precision,
                                   batch_size=batch_size, knn=knn)
    done = {e["path"]: e for e in previous}
    results: dict[str, Any] = {
        "kind": TRAJECTORY, "settings": settings, "run": str(run) if run else None, "model": None,
        "training_loss": training_loss(run), "snapshots": [],
        "step_axis": "position in the order given" if any(s.ordinal for s in snapshots) else "training step",
        "provenance": provenance(device=str(device)),
    }

    def keep(entry: dict[str, Any]) -> None:
        results["snapshots"] = sorted([*results["snapshots"], entry], key=lambda e: e["step"])
        if saved is not None:
            saved(results)

    for i, snap in enumerate(snapshots):
        key = str(snap.path)
        try:
            if key in done:
                entry = {**done[key], "step": snap.step}  # a position when steps are unknown: this run's
                arch = entry["architecture"]
            else:
                log.info("snapshot %d/%d: %s", i + 1, len(snapshots), snap.path)
                model = load(key, seed=seed)
                arch = architecture(model_summary(model))
            if results["model"] is None:
                results["model"] = arch
            elif arch != results["model"]:
                changed = {k: arch[k] for k in arch if arch[k] != results["model"][k]}
                raise VitscopeError(f"{snap.path} is another architecture ({changed}) than the trajectory's first "
                                    f"snapshot: one architecture per trajectory")
            if key not in done:
                r = analyze_model(model, data, images=images, batch_size=batch_size, device=device,
                                  precision=precision, metrics=metrics, seed=seed, workers=workers, progress=progress)
                entry = {"path": key, "step": snap.step, "epoch": snap.epoch, "architecture": arch,
                         "images": r["data"]["images"], "seconds": r["seconds"], "metrics": r["metrics"]}
                if knn is not None:
                    entry["probe"] = knn_probe(model, knn, data, images=images, seed=seed, batch_size=batch_size,
                                               device=device, workers=workers)
        except VitscopeError as e:
            if results["snapshots"] and saved is not None:
                saved(results)
            kept = f" ({len(results['snapshots'])} analysed snapshots kept)" if results["snapshots"] else ""
            raise VitscopeError(f"{e}{kept}") from e
        keep(entry)
    return results
