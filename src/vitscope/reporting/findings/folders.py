"""The findings' inputs: results folders read into an :class:`Evidence`, every model by its family.

A user names each model's family (``--family moco=cl --family simmim=mim``): a key matches
a results folder when it is part of the folder's name or of the model spec recorded in the
results (the longest matching key wins, so ``ft-moco=cl-ft`` beats ``moco=cl``). Families:
``cl`` (contrastive), ``mim`` (masked image modelling), ``hybrid`` (CL + MIM), each with an
optional ``-ft`` suffix for a fine-tuned model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitscope.errors import VitscopeError
from vitscope.results import probe_accuracies, read_results

FAMILIES = ("cl", "mim", "hybrid")


@dataclass
class Model:
    """One model's results of one kind: ``label`` (folder), ``family``, the parsed file."""

    label: str
    family: str
    data: Any
    key: str = ""  # the --family key that matched it


@dataclass
class Evidence:
    """Every results file given, sorted by kind; comparisons keep the families of both sides."""

    analysis: list[Model] = field(default_factory=list)  # data: the "metrics" mapping
    probe: list[Model] = field(default_factory=list)  # data: {"knn"|"linear": {feature: per block}}
    finetune: list[Model] = field(default_factory=list)  # data: finetune.json
    robustness: list[Model] = field(default_factory=list)  # data: one entry of results["models"]
    # (label, family A, family B, results, matched key A, matched key B)
    compare: list[tuple[str, str, str, dict[str, Any], str, str]] = field(default_factory=list)

    def of(self, kind: str, family: str) -> list[Model]:
        return [m for m in getattr(self, kind) if m.family == family]


def parse_families(items: Sequence[str]) -> dict[str, str]:
    """``["moco=cl", "simmim=mim"]`` → ``{"moco": "cl", "simmim": "mim"}``; bad items are errors."""
    out = {}
    for item in items:
        key, sep, fam = item.partition("=")
        base = fam.strip().removesuffix("-ft")
        if not sep or not key.strip() or base not in FAMILIES:
            raise VitscopeError(f"--family expects NAME=FAMILY with FAMILY one of {list(FAMILIES)} "
                                f"(optionally with -ft for a fine-tuned model), got '{item}'")
        out[key.strip()] = fam.strip()
    return out


def matching_key(texts: Sequence[str], families: Mapping[str, str]) -> str | None:
    """The longest key of ``families`` found in any of ``texts`` (None when none is)."""
    hits = [k for k in families if any(k in t for t in texts)]
    return max(hits, key=len) if hits else None


def family_of(texts: Sequence[str], families: Mapping[str, str]) -> str | None:
    """The family of the longest key found in any of ``texts`` (None when no key matches)."""
    key = matching_key(texts, families)
    return families[key] if key else None


def gather(folders: Sequence[Path], families: Mapping[str, str]) -> Evidence:
    """Read every results file in ``folders`` into an :class:`Evidence` (unmatched models are left out)."""
    return evidence([(folder.name, file, read_results(folder / file, reader="findings"))
                     for folder in folders for file in RESULT_FILES if (folder / file).is_file()], families)


RESULT_FILES = ("results.json", "probe.json", "finetune.json")


def evidence(entries: Iterable[tuple[str, str, dict[str, Any]]], families: Mapping[str, str]) -> Evidence:
    """An :class:`Evidence` of ``(name, file name, results)`` entries, results as :func:`read_results`
    gives them (checked with ``reader="findings"``); ``name`` stands for the folder name in matching
    ``families`` keys."""
    ev = Evidence()
    for name, file, r in entries:
        _add(ev, name, file, r, families)
    return ev


def _add(ev: Evidence, name: str, file: str, r: dict[str, Any], families: Mapping[str, str]) -> None:
    prov = r.get("provenance") if isinstance(r.get("provenance"), dict) else {}
    if file == "probe.json" or file == "finetune.json":
        key = matching_key([name, str(prov.get("model", ""))], families)
        if key:  # a fine-tuning run counts for the family of the model it started from
            getattr(ev, file.split(".")[0]).append(
                Model(name, families[key].removesuffix("-ft"), probe_accuracies(r) if file == "probe.json" else r,
                      key))
    elif r.get("kind") == "vitscope-analysis":
        fam = family_of([name, str(r["model"].get("spec", ""))], families)
        if fam:
            ev.analysis.append(Model(name, fam, r["metrics"]))
    elif r.get("format") == "vitscope-robustness":
        for m in r["models"]:
            fam = family_of([m["spec"]] + ([name] if len(r["models"]) == 1 else []), families)
            if fam:
                ev.robustness.append(Model(f"{name}: {m['spec']}", fam, m))
    elif r.get("format") == "vitscope-compare" and len(r["models"]) == 2:
        keys = [matching_key([m["spec"]], families) for m in r["models"]]
        if keys[0] and keys[1]:
            ev.compare.append((name, families[keys[0]], families[keys[1]], r, keys[0], keys[1]))
