"""A ``vitscope pretrain`` run's log (``log.jsonl``, one JSON record per ``log_every`` steps): read and summarised.

Every record holds ``step``, ``epoch`` and ``loss`` (the mean over the steps since the last
record), the learning rate, ``img_per_s`` and the method's extra quantities (the hybrid's loss
parts, DINO's teacher entropy and KL). A resumed run's log is cut back to its checkpoint's step,
so the steps increase.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vitscope.errors import VitscopeError

LOG = "log.jsonl"
NEEDED = ("step", "epoch", "loss")  # what every reader of the records indexes


def read_log(run: Path) -> list[dict[str, Any]]:
    """The records of ``run/log.jsonl`` (a torn last line, as after a crash, is left out); a record
    without the step, epoch or loss the curves need is a one-line error naming it."""
    try:
        lines = (run / LOG).read_text().splitlines()
    except OSError as e:
        raise VitscopeError(f"cannot read the training log of {run}: {e}") from e
    records = []
    for i, ln in enumerate(lines):
        try:
            record = json.loads(ln)
        except json.JSONDecodeError:
            continue
        missing = [k for k in NEEDED if not isinstance(record, dict) or record.get(k) is None]
        if missing:
            raise VitscopeError(f"{run}/{LOG} line {i + 1} lacks {', '.join(missing)}: not a `vitscope pretrain` log")
        records.append(record)
    if not records:
        raise VitscopeError(f"{run}/{LOG} has no records")
    return records


def training_summary(run: Path, until_step: int | None = None) -> dict[str, Any]:
    """Wall time, steps and first/last loss of a pretraining run from its ``log.jsonl``, up to
    ``until_step`` (the checkpoint's step: a run stopped after it logged a few steps more).

    Wall time is the sum of the logged intervals (``Δstep · batch / img_per_s``), so the gaps
    between resumed pieces of a run are not counted.
    """
    batch = json.loads((run / "config.json").read_text())["batch_size"]
    records = [r for r in read_log(run) if until_step is None or r["step"] <= until_step]
    if not records:
        raise VitscopeError(f"{run}/{LOG} has no records up to step {until_step}")
    seconds, prev = 0.0, 0
    for rec in records:
        seconds += (rec["step"] - prev) * batch / rec["img_per_s"]
        prev = rec["step"]
    return {"steps": int(records[-1]["step"]), "wall_seconds": round(seconds, 1),
            "loss_first": records[0]["loss"], "loss_last": records[-1]["loss"]}
