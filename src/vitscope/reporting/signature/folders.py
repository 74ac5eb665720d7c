"""The CL–MIM signature, its inputs: results folders (or result objects) read and grouped by model,
the ``--reference`` option parsed, ``signature.json`` read back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitscope.errors import VitscopeError
from vitscope.reporting.signature.properties import ModelResults
from vitscope.results import ANALYSIS, COMPARE, PROBE, ROBUSTNESS, SIGNATURE, kind_of, read_results


@dataclass(frozen=True)
class Source:
    """The results of one folder (or of result objects in memory, ``name`` saying which): ``(spec,
    kind, data)`` per model (kinds ``analysis``, ``probe``, ``robustness``) and two-model comparisons."""

    name: str
    per_model: list[tuple[str, str, dict[str, Any]]]
    compares: list[dict[str, Any]]


def source_of(name: str, files: Sequence[tuple[str | None, dict[str, Any]]]) -> Source:
    """The :class:`Source` of results ``files``: ``(kind, content)`` pairs, kinds of :mod:`vitscope.results`
    (other kinds are not used); a :class:`VitscopeError` when none is of use."""
    per_model: list[tuple[str, str, dict[str, Any]]] = []
    compares: list[dict[str, Any]] = []
    for kind, r in files:
        if kind == PROBE:
            spec = (r.get("provenance") or {}).get("model")
            if spec is None:
                raise VitscopeError(f"the probe results in {name} do not name their model (provenance.model)")
            per_model.append((str(spec), "probe", r))
        elif kind == ANALYSIS:
            per_model.append((str(r["model"]["spec"]), "analysis", r))
        elif kind == ROBUSTNESS:
            per_model += [(str(m["spec"]), "robustness", m) for m in r["models"]]
        elif kind == COMPARE and len(r["models"]) == 2:
            compares.append(r)
    if not per_model and not compares:
        raise VitscopeError(f"{name} holds no analyze, probe, robustness or compare results")
    return Source(name, per_model, compares)


def read_folder(folder: Path) -> Source:
    """The results files of ``folder`` (``results.json``, ``probe.json``), checked, as a :class:`Source`."""
    files = []
    for path in (folder / "results.json", folder / "probe.json"):
        if path.is_file():
            r = read_results(path)
            files.append((kind_of(r, path), r))
    return source_of(str(folder), files)


def gather(folders: Sequence[Path], references: Mapping[Path, str]
           ) -> tuple[list[ModelResults], ModelResults, ModelResults, list[dict[str, Any]]]:
    """:func:`gather_sources` of results folders: the models' ``folders`` and the ``references``
    (folder → ``cl`` | ``mim``)."""
    return gather_sources([(read_folder(f), "model") for f in folders]
                          + [(read_folder(f), family) for f, family in references.items()])


def gather_sources(sources: Sequence[tuple[Source, str]]
                   ) -> tuple[list[ModelResults], ModelResults, ModelResults, list[dict[str, Any]]]:
    """Models under study, the CL and MIM references and every comparison, from ``(source, role)``
    pairs (role ``model``, ``cl`` or ``mim``). Results are grouped by the model spec they record;
    each reference family must name exactly one model, and a model must not have two results of one
    kind."""
    by_spec: dict[str, ModelResults] = {}
    compares: list[dict[str, Any]] = []
    roles: dict[str, set[str]] = {"model": set(), "cl": set(), "mim": set()}
    for source, role in sources:
        compares += source.compares
        for spec, kind, data in source.per_model:
            m = by_spec.setdefault(spec, ModelResults(spec))
            if getattr(m, kind) is not None and source.name not in m.folders:
                raise VitscopeError(f"two {kind} results for {spec}: {m.folders} and {source.name}")
            setattr(m, kind, data)
            if source.name not in m.folders:
                m.folders.append(source.name)
            roles[role].add(spec)
    if both := roles["cl"] & roles["mim"]:
        raise VitscopeError(f"one model cannot be both the CL and the MIM reference: {', '.join(sorted(both))}")
    refs = {}
    for family in ("cl", "mim"):
        if len(roles[family]) != 1:
            raise VitscopeError(f"the {family.upper()} reference results must be of exactly one model, "
                                f"found {sorted(roles[family]) or 'none'}")
        refs[family] = by_spec[roles[family].pop()]
    models = [by_spec[s] for s in sorted(roles["model"]) if s not in (refs["cl"].spec, refs["mim"].spec)]
    if not models:
        raise VitscopeError("no results of a model other than the references among the results given")
    return models, refs["cl"], refs["mim"], compares


def parse_references(items: Sequence[str]) -> dict[Path, str]:
    """``["runs/moco=cl", "runs/simmim=mim"]`` → ``{Path("runs/moco"): "cl", ...}``; both families needed."""
    out = {}
    for item in items:
        folder, sep, fam = item.rpartition("=")
        if not sep or fam not in ("cl", "mim") or not folder:
            raise VitscopeError(f"--reference expects RESULTS=cl or RESULTS=mim, got '{item}'")
        if not Path(folder).is_dir():
            raise VitscopeError(f"--reference {item}: '{folder}' is not a results folder")
        if out.get(Path(folder), fam) != fam:
            raise VitscopeError(f"--reference: one folder cannot be both the CL and the MIM reference ('{folder}')")
        out[Path(folder)] = fam
    if items and set(out.values()) != {"cl", "mim"}:
        raise VitscopeError("--reference needs at least one CL and one MIM results folder (or none, for the zoo's)")
    return out


def read_signature(path: Path) -> dict[str, Any]:
    """A ``signature.json`` written by ``vitscope signature``, checked as every results file is
    (:func:`vitscope.results.read_results`); a one-line error for anything else."""
    return read_results(path, kind=SIGNATURE)
