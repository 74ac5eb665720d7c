"""Results side by side: ``vitscope.report`` (one HTML page) and ``vitscope.findings`` (the papers'
claims checked on them, as a table)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from vitscope.api.inputs import ResultLike
from vitscope.api.result import PathLike, Result
from vitscope.api.results import Comparison, Robustness, as_result
from vitscope.errors import VitscopeError


def _families(families: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """``{"moco": "cl"}`` or ``["moco=cl"]``, checked (:func:`vitscope.reporting.findings.parse_families`)."""
    from vitscope.reporting.findings import parse_families

    if isinstance(families, Mapping):
        families = [f"{k}={v}" for k, v in families.items()]
    return parse_families([families] if isinstance(families, str) else list(families or []))


def _folder_name(r: Result, taken: set[str]) -> str:
    """A folder name for unsaved results ``r``: its model(s), made unique among ``taken``."""
    base = re.sub(r"[^\w.+-]+", "-", r.label).strip("-") or type(r).__name__.lower()
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}-{i}"
    taken.add(name)
    return name


def report(
    results: Sequence[ResultLike], out: PathLike = "report.html", *, title: str = "vitscope report",
    families: Mapping[str, str] | Sequence[str] | None = None, findings_markdown: PathLike | None = None,
) -> Path:
    """One self-contained HTML page of ``results`` (result objects or results folders), as ``vitscope
    report`` writes it: per results a section with provenance, per-block numbers and every figure.

    ``families`` (``{"moco": "cl", "simmim": "mim"}``; cl, mim, hybrid, ``-ft`` for fine-tuned): a
    model whose folder name or spec contains a key belongs to its family, and the page opens with the
    papers' claims checked on the results (``findings_markdown``: also as a Markdown file). Results not
    saved yet are written to a temporary folder for the page (named after their model).

    >>> vitscope.report([moco, simmim, cka], "report.html", families={"moco": "cl", "simmim": "mim"})
    """
    from vitscope.reporting.findings import check_claims, gather
    from vitscope.reporting.findings import findings_markdown as as_markdown
    from vitscope.reporting.html import RESULT_FILES, build_report
    from vitscope.results import write_atomic

    fams = _families(families)
    if findings_markdown is not None and not fams:
        raise VitscopeError("the findings table (--findings-markdown) needs at least one family (--family NAME=FAMILY)")
    with tempfile.TemporaryDirectory(prefix="vitscope-report-") as tmp:
        folders: list[Path] = []
        taken: set[str] = set()
        for r in results:
            if isinstance(r, Result) and r.folder is None:
                folder = Path(tmp) / _folder_name(r, taken)
                folder.mkdir()
                r._write(folder)
            else:
                folder = r.folder if isinstance(r, Result) else Path(r)  # type: ignore[assignment]
            if not folder.is_dir() or not (any(folder.glob("*.png")) or any((folder / n).exists() for n in RESULT_FILES)):
                raise VitscopeError(f"{folder} is not a results folder (no {', '.join(RESULT_FILES)} and no PNG figures)")
            folders.append(folder)
        if findings_markdown is not None:
            write_atomic(Path(findings_markdown), as_markdown(check_claims(gather(folders, fams))).encode())
        return build_report(folders, Path(out), title, fams)


FINDINGS_COLUMNS = ["paper", "figure", "claim", "verdict", "mark", "measured"]


def findings(results: Mapping[ResultLike, str | tuple[str, str] | None], only_measured: bool = False) -> pd.DataFrame:
    """The papers' claims (Park et al. 2023, Shekhar et al. 2023) checked on ``results``, one row each:
    paper, figure, claim, verdict (holds, does not hold, not meaningful, not enough data), its mark
    (✓ ✗ ○ –) and the numbers measured.

    ``results`` maps each result object (or results folder) to the family of its model: ``cl``
    (contrastive), ``mim`` (masked image modelling) or ``hybrid``, ``-ft`` for fine-tuned; a comparison
    to the families of its two models, ``("cl", "mim")``, or to None when both models appear among the
    other results. ``only_measured``: leave out the claims the results cannot decide.

    >>> vitscope.findings({moco: "cl", simmim: "mim", cka: ("cl", "mim"), knn_moco: "cl", knn_simmim: "mim"})
    """
    from vitscope.reporting.findings import MARK, NO_DATA, check_claims, evidence

    entries: list[tuple[str, str, dict]] = []
    keys: dict[str, str] = {}

    def family_of(key: str, family: str) -> None:
        if keys.setdefault(key, family) != family:
            raise VitscopeError(f"'{key}' is given two families: {keys[key]} and {family}")

    for x, family in results.items():
        r = as_result(x, reader="findings")
        name = r.folder.name if r.folder is not None else r.label
        specs = [m["spec"] for m in r.results["models"]] if isinstance(r, (Comparison, Robustness)) else [r.label]
        if isinstance(family, tuple):
            if len(family) != len(specs):
                raise VitscopeError(f"{len(family)} families for the {len(specs)} models of {r.label}")
            for spec, fam in zip(specs, family):
                family_of(spec, fam)
        elif family is not None:
            for spec in specs:
                family_of(spec, family)
        entries.append((name, r.file, r.results))
    rows = [{"paper": c.paper, "figure": c.figure, "claim": c.statement, "verdict": v.status, "mark": MARK[v.status],
             "measured": v.numbers}
            for c, v in check_claims(evidence(entries, _families(keys))) if not (only_measured and v.status == NO_DATA)]
    return pd.DataFrame(rows, columns=FINDINGS_COLUMNS)
