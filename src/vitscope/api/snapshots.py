"""``vitscope.trajectory``: the analysis of every snapshot of a training run, on the same images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from vitscope.api.inputs import DataLike, names, output_folder
from vitscope.api.result import PathLike
from vitscope.api.results import Trajectory

DEFAULT_METRICS = "attention,similarity,fourier,norms"


def trajectory(
    sources: PathLike | Sequence[PathLike], data: DataLike, *, out: PathLike | None = None, images: int | None = None,
    batch_size: int = 64, device: str = "auto", precision: str = "fp32", metrics: str | Sequence[str] = DEFAULT_METRICS,
    seed: int = 0, workers: int | None = None, progress: bool = True, plots: bool = True, knn: DataLike | None = None,
) -> Trajectory:
    """Park et al.'s and Darcet et al.'s properties along training: ``vitscope.analyze`` of every snapshot.

    ``sources``: a ``vitscope pretrain`` run folder trained with ``snapshot_every=N`` (its
    ``snapshots/``, and its ``log.jsonl`` for the loss curve), a folder of checkpoint files, or
    checkpoint files (any ``--model PATH`` format), one or a list. Snapshots are ordered by training
    step (a snapshot's metadata, else ``step-N`` in the file name, else the order given) and each is
    analysed in one streaming pass over the same seeded subset of ``images`` of ``data``: its numbers
    are those ``vitscope.analyze`` gives it alone. ``metrics`` as ``analyze`` takes them (default
    attention, similarity, Fourier and the token norms). ``knn``: a labelled bank (``data`` labelled
    too, same classes): also the weighted 20-NN accuracy of every block of each snapshot (CLS token;
    GAP without one), the numbers ``vitscope.probe(..., linear=False)`` gives (Shekhar et al. Fig. 3).

    ``out``: also write ``trajectory.json`` after every snapshot, and at the end ``trajectory.md`` and
    (``plots``) ``trajectory.png`` (each property's later-half mean against the step, the training
    loss on a second axis) and ``trajectory_heatmap.png`` (block × step). A ``trajectory.json`` already
    in ``out`` with the same settings is continued: its snapshots are not analysed again. A snapshot
    that fails to load or is of another architecture stops the run with one line (:class:`VitscopeError`);
    what was analysed before it is written.

    >>> t = vitscope.trajectory("runs/moco", "cifar10:test", images=1000, out="runs/moco-trajectory")
    >>> t.to_frame().query("quantity == 'nmi' and head.isna()")   # step × block
    """
    from vitscope.errors import VitscopeError
    from vitscope.results import write_results
    from vitscope.runtime import resolve_device
    from vitscope.snapshots import analyze_snapshots, find_snapshots, previous_entries, trajectory_settings

    folder = output_folder(out)
    snaps, run = find_snapshots([sources] if isinstance(sources, (str, os.PathLike)) else list(sources))
    metric_names = names(metrics)
    settings = trajectory_settings(data, images=images, seed=seed, metrics=metric_names, precision=precision,
                                   batch_size=batch_size, knn=knn)
    previous = previous_entries(folder / Trajectory.file, settings) if folder is not None else []
    latest: dict[str, Any] = {}

    def saved(results: dict[str, Any]) -> None:
        latest.update(results)
        if folder is not None:
            write_results(folder / Trajectory.file, results)

    try:
        results = analyze_snapshots(snaps, data, run=run, images=images, batch_size=batch_size,
                                    device=resolve_device(device), precision=precision, metrics=metric_names,
                                    seed=seed, workers=workers, progress=progress, knn=knn, previous=previous,
                                    saved=saved)
    except VitscopeError:
        if folder is not None and latest.get("snapshots"):
            Trajectory(latest).save(folder, plots=plots)  # what was analysed: its table and figures too
        raise
    result = Trajectory(results)
    if folder is not None:
        result.save(folder, plots=plots)
    return result
