"""The CL–MIM signature: where a model sits between a contrastive and a masked-modelling reference.

A pure function of results files (``analyze``, ``probe``, ``robustness``, ``compare``), like
:mod:`vitscope.reporting.findings`. For every property x of the papers (:data:`PROPERTIES`), the
model's position on the CL–MIM axis is

    s = (x − x_MIM) / (x_CL − x_MIM)        1: like the CL reference, 0: like the MIM one,

values outside [0, 1] allowed (beyond a reference). Depth is relative, t = block / L, so models
of different depths line up: the references' curves are interpolated linearly onto the model's
blocks. Each property is also summarised over two depth bands, the first half (t ≤ 1/2) and the
later half (t > 1/2, blocks ⌊L/2⌋+1…L as in the findings): s of the band means.

"Does not separate": where |x_CL − x_MIM| is not above the references' spread (the larger of
the two: standard deviation over heads, or the standard error over images of an accuracy or a
shape bias), the two references do not differ clearly and no position is given. Properties whose
results record no spread (cosines, spectra, Fourier, the depth of a peak) are placed without
this test (``separates`` is ``None``).

"Looks untrained": attention entropy within :data:`UNTRAINED_TOLERANCE` of the uniform entropy
log N in every block (random weights give 99.99 %, the zoo's trained models < 90 % somewhere).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitscope.errors import VitscopeError
from vitscope.reporting.findings import mean_log
from vitscope.results import (
    ANALYSIS,
    COMPARE,
    PROBE,
    ROBUSTNESS,
    SIGNATURE,
    kind_of,
    probe_accuracies,
    read_results,
)

FORMULA = "s = (x - x_MIM) / (x_CL - x_MIM): 1 like the CL reference, 0 like the MIM reference"
#: attention entropy ≥ (1 − tolerance)·log N in every block flags a model as looking untrained
UNTRAINED_TOLERANCE = 0.02
BANDS = ("first half", "later half")
WHOLE = "whole model"


@dataclass
class ModelResults:
    """Every results file of one model (one spec): the parsed ``results.json`` of ``analyze``, the
    ``probe.json``, the model's entry of a ``robustness`` results file, and where they came from."""

    spec: str
    folders: list[str] = field(default_factory=list)
    analysis: dict[str, Any] | None = None
    probe: dict[str, Any] | None = None
    robustness: dict[str, Any] | None = None


@dataclass(frozen=True)
class Curve:
    """One property of one model: ``values`` per block 1…L (one value: a property of the whole
    model) and their ``spread`` (same shape; ``None`` where the results record none)."""

    values: np.ndarray
    spread: np.ndarray | None = None

    @property
    def depths(self) -> np.ndarray:
        """Relative depth t = block / L."""
        return np.arange(1, len(self.values) + 1) / len(self.values)

    def at(self, depths: np.ndarray) -> Curve:
        """The curve linearly interpolated at relative ``depths`` (held flat before block 1)."""
        interp = lambda v: np.interp(depths, self.depths, v)  # noqa: E731
        return Curve(interp(self.values), None if self.spread is None else interp(self.spread))


Measure = Callable[[ModelResults], "Curve | None"]


@dataclass(frozen=True)
class Property:
    key: str
    label: str
    figure: str  # the paper figure behind it
    source: str  # the results it needs: analysis, probe, robustness, compare
    spread_over: str  # "heads", "images" or "" (no spread recorded)
    measure: Measure
    per_depth: bool = True


# ----------------------------------------------------------------------------- measures

def uniform_distance(grid: Sequence[int], patch: Sequence[int]) -> float:
    """Attention distance of uniform attention on a grid: mean over all query/key patch pairs
    (self included) of the Euclidean distance between patch centres, in pixels."""
    ij = np.stack(np.meshgrid(np.arange(grid[0]) * patch[0], np.arange(grid[1]) * patch[1], indexing="ij"), -1)
    ij = ij.reshape(-1, 2).astype(float)
    return float(np.linalg.norm(ij[:, None] - ij[None], axis=-1).mean())


def _metrics(m: ModelResults, name: str) -> dict[str, Any] | None:
    return (m.analysis or {}).get("metrics", {}).get(name)


def distance_fraction(m: ModelResults) -> Curve | None:
    """Park Fig. 3: attention distance over the uniform-attention distance of the model's own grid
    (scale-free); spread: standard deviation over heads."""
    a = _metrics(m, "attention")
    if not a:
        return None
    d0 = uniform_distance(m.analysis["model"]["grid_size"], m.analysis["model"]["patch_size"])  # type: ignore[index]
    per_head = np.asarray(a["distance_per_head"], float) / d0
    return Curve(np.asarray(a["distance"], float) / d0, per_head.std(1))


def nmi(m: ModelResults) -> Curve | None:
    """Park Fig. 4: NMI of attention; spread: standard deviation over heads."""
    a = _metrics(m, "attention")
    return Curve(np.asarray(a["nmi"], float), np.asarray(a["nmi_std_over_heads"], float)) if a else None


def similarity(key: str) -> Measure:
    """Park Fig. 5: a cosine similarity of the analysis (heads, before/after attention, tokens)."""
    def measure(m: ModelResults) -> Curve | None:
        v = (_metrics(m, "similarity") or {}).get(key)
        return Curve(np.asarray(v, float)) if v and None not in v else None
    return measure


def token_volume_change(m: ModelResults) -> Curve | None:
    """Park Fig. 7 top: change of the mean log singular value of one image's tokens from the
    embedding to each block (the log volume the tokens span)."""
    s = _metrics(m, "spectrum")
    if not s:
        return None
    vol = np.asarray(mean_log(s["token_log_sv"]))
    return Curve(vol[1:] - vol[0])


def high_frequency(m: ModelResults) -> Curve | None:
    """Park Fig. 9: ΔlogAmplitude of the feature maps at the highest frequency, per block."""
    f = _metrics(m, "fourier")
    return Curve(np.asarray(f["delta_log_amplitude_at_highest"][1:], float)) if f else None


def binomial_se(n: int, *ps: float) -> float:
    """Standard error over n images of a proportion p (or of a difference of proportions p1 − p2
    measured on n images each): √(Σ p(1 − p) / n)."""
    return math.sqrt(sum(p * (1 - p) for p in ps) / n)


def _cls_accuracy(m: ModelResults, method: str) -> tuple[np.ndarray, int] | None:
    acc = probe_accuracies(m.probe).get(method, {}).get("cls") if m.probe else None
    return (np.asarray(acc, float), int(m.probe["provenance"]["val_images"])) if acc else None  # type: ignore[index]


def accuracy_peak_depth(method: str) -> Measure:
    """Park Fig. 11, Shekhar Fig. 3: relative depth (block / L) of the best k-NN or linear-probe
    accuracy of the CLS token (no spread recorded)."""
    def measure(m: ModelResults) -> Curve | None:
        got = _cls_accuracy(m, method)
        return Curve(np.array([(np.argmax(got[0]) + 1) / len(got[0])])) if got else None
    return measure


def last_block_gain(method: str) -> Measure:
    """Shekhar Fig. 3: accuracy of the last block minus the block before it (CLS); spread: the
    standard error of that difference over the validation images."""
    def measure(m: ModelResults) -> Curve | None:
        got = _cls_accuracy(m, method)
        if not got or len(got[0]) < 2:
            return None
        (a, b), n = got[0][-2:], got[1]
        return Curve(np.array([b - a]), np.array([binomial_se(n, a, b)]))
    return measure


def shape_bias(m: ModelResults) -> Curve | None:
    """Park Fig. 8 left: cue-conflict shape bias; spread: its standard error over the n shape or
    texture decisions."""
    sb = (m.robustness or {}).get("shape_bias")
    if not sb or sb.get("shape_bias") is None:
        return None
    n = sum(c["shape"] + c["texture"] for c in sb["per_class"].values())
    return Curve(np.array([sb["shape_bias"]]), np.array([binomial_se(n, sb["shape_bias"])]))


def noise_drop(m: ModelResults) -> Curve | None:
    """Park Fig. 8 right: accuracy lost under band noise at the highest frequency; spread: the
    standard error of the difference of clean and noisy accuracy over the images."""
    nz = (m.robustness or {}).get("noise")
    if not nz:
        return None
    clean, noisy = nz["clean_accuracy"], nz["accuracy"][-1]
    return Curve(np.array([clean - noisy]), np.array([binomial_se(nz["images"], clean, noisy)]))


def aligned_diagonal(matrix: Sequence[Sequence[float]], rows_are_model: bool) -> np.ndarray:
    """Per block i of the model (1…L), the CKA with the other model's block j = ⌈i·L'/L⌉, the one
    whose relative depths ((j−1)/L', j/L'] hold i/L (the diagonal when both have L blocks)."""
    a = np.asarray(matrix, float)
    a = a if rows_are_model else a.T
    n, k = a.shape
    blocks = np.arange(1, n + 1)
    return a[blocks - 1, (blocks * k + n - 1) // n - 1]


def cka_to(reference: str, compares: Sequence[dict[str, Any]]) -> Measure:
    """Shekhar Fig. 1: CKA of block outputs to the model ``reference`` per relative depth, from a
    ``vitscope compare`` of the two (1 for the reference itself)."""
    def measure(m: ModelResults) -> Curve | None:
        if m.spec == reference:
            depth = (m.analysis or {}).get("model", {}).get("depth") or (m.probe or {}).get("depth")
            return Curve(np.ones(depth)) if depth else None
        for r in compares:
            specs = [s["spec"] for s in r["models"]]
            if "block" in r.get("cka", {}) and sorted(specs) == sorted([m.spec, reference]):
                return Curve(aligned_diagonal(r["cka"]["block"], specs[0] == m.spec))
        return None
    return measure


#: The properties of the signature, each with the paper figure behind it.
PROPERTIES: tuple[Property, ...] = (
    Property("attention_distance", "attention distance / uniform", "Park Fig. 3", "analysis", "heads",
             distance_fraction),
    Property("nmi", "NMI of attention", "Park Fig. 4", "analysis", "heads", nmi),
    Property("heads_cosine", "cosine between heads", "Park Fig. 5 left", "analysis", "", similarity("heads_cosine")),
    Property("depth_cosine", "cosine before/after attention", "Park Fig. 5 middle", "analysis", "",
             similarity("depth_cosine")),
    Property("tokens_cosine", "cosine between tokens", "Park Fig. 5 right", "analysis", "",
             similarity("tokens_cosine")),
    Property("token_volume", "token volume change (Δ mean log σ)", "Park Fig. 7 top", "analysis", "",
             token_volume_change),
    Property("high_frequency", "ΔlogAmplitude at the highest frequency", "Park Fig. 9", "analysis", "",
             high_frequency),
    Property("knn_peak_depth", "depth of best 20-NN accuracy (CLS)", "Park Fig. 11, Shekhar Fig. 3", "probe", "",
             accuracy_peak_depth("knn"), per_depth=False),
    Property("knn_last_gain", "20-NN gain of the last block (CLS)", "Shekhar Fig. 3", "probe", "images",
             last_block_gain("knn"), per_depth=False),
    Property("linear_peak_depth", "depth of best linear-probe accuracy (CLS)", "Park Fig. 11", "probe", "",
             accuracy_peak_depth("linear"), per_depth=False),
    Property("linear_last_gain", "linear-probe gain of the last block (CLS)", "Park Fig. 11", "probe", "images",
             last_block_gain("linear"), per_depth=False),
    Property("shape_bias", "shape bias (cue conflict)", "Park Fig. 8 left", "robustness", "images", shape_bias,
             per_depth=False),
    Property("noise_drop", "accuracy drop, noise at the highest frequency", "Park Fig. 8 right", "robustness",
             "images", noise_drop, per_depth=False),
)


def cka_properties(cl: str, mim: str, compares: Sequence[dict[str, Any]]) -> tuple[Property, ...]:
    """CKA to each reference (Shekhar Fig. 1): x_CL = 1 for CKA to CL (the reference itself), x_MIM =
    CKA(MIM, CL); and the same way round for CKA to MIM."""
    return tuple(Property(f"cka_{role}", f"CKA to the {role.upper()} reference", "Shekhar Fig. 1", "compare", "",
                          cka_to(spec, compares)) for role, spec in (("cl", cl), ("mim", mim)))


# ----------------------------------------------------------------------------- placement

def position(x: float, x_cl: float, x_mim: float) -> float:
    """s = (x − x_MIM) / (x_CL − x_MIM)."""
    return (x - x_mim) / (x_cl - x_mim)


def placement(x: float, x_cl: float, x_mim: float, spread_cl: float | None, spread_mim: float | None
              ) -> dict[str, Any]:
    """The three raw values, the references' spread (the larger of the two), whether they separate
    (|x_CL − x_MIM| above that spread; ``None`` when no spread is recorded) and the position s
    (``None`` where they do not separate)."""
    spread = None if spread_cl is None or spread_mim is None else max(spread_cl, spread_mim)
    gap = abs(x_cl - x_mim)
    sep = False if gap == 0 else None if spread is None else bool(gap > spread)
    return {"model": x, "cl": x_cl, "mim": x_mim, "spread": spread, "separates": sep,
            "position": None if sep is False else position(x, x_cl, x_mim)}


def _placed(curves: Sequence[Curve], mask: np.ndarray | slice) -> dict[str, Any]:
    """:func:`placement` of the means of the model's, CL's and MIM's curves over ``mask``."""
    x, c, m = (float(np.mean(k.values[mask])) for k in curves)
    sc, sm = (None if k.spread is None else float(np.mean(k.spread[mask])) for k in curves[1:])
    return placement(x, c, m, sc, sm)


def place(prop: Property, model: ModelResults, cl: ModelResults, mim: ModelResults) -> dict[str, Any]:
    """One property of ``model`` on the CL–MIM axis: per block (relative depth) and per depth band
    (:data:`BANDS`; one band, :data:`WHOLE`, for a property of the whole model)."""
    head = {"key": prop.key, "label": prop.label, "figure": prop.figure, "source": prop.source,
            "spread_over": prop.spread_over or None}
    curves = [prop.measure(r) for r in (model, cl, mim)]
    missing = [who for who, c in zip(("the model", "the CL reference", "the MIM reference"), curves) if c is None]
    if missing:
        return {**head, "missing": f"needs {prop.source} results of {' and '.join(missing)}"}
    if not prop.per_depth:
        return {**head, "per_depth": [], "bands": {WHOLE: _placed(curves, slice(None))}}  # type: ignore[arg-type]
    t = curves[0].depths
    curves = [curves[0]] + [c.at(t) for c in curves[1:]]  # type: ignore[union-attr]
    per_depth = [{"block": i + 1, "depth": float(t[i]), **_placed(curves, slice(i, i + 1))} for i in range(len(t))]
    bands = {name: _placed(curves, mask) for name, mask in zip(BANDS, (t <= 0.5, t > 0.5)) if mask.any()}
    return {**head, "per_depth": per_depth, "bands": bands}


def looks_untrained(m: ModelResults, tolerance: float = UNTRAINED_TOLERANCE) -> str | None:
    """A flag when attention entropy is within ``tolerance`` of log N (uniform attention) in every
    block; ``None`` otherwise or without attention results."""
    a = _metrics(m, "attention")
    if not a:
        return None
    ratio = np.asarray(a["entropy"], float) / a["max_entropy"]
    if np.all(ratio >= 1 - tolerance):
        return (f"looks untrained: attention entropy is {100 * ratio.min():.2f}–{100 * ratio.max():.2f} % of "
                f"uniform (log N) in every block (threshold {100 * (1 - tolerance):.0f} %)")
    return None


def input_size(m: ModelResults) -> tuple[int, ...] | None:
    """The input size (C, H, W) recorded by the model's analysis, if any."""
    size = ((m.analysis or {}).get("data", {}).get("preprocessing") or {}).get("input_size")
    return tuple(size) if size else None


def check_input_sizes(models: Sequence[ModelResults]) -> None:
    """Refuse a silent comparison across input sizes: a :class:`VitscopeError` naming each size."""
    sizes = {m.spec: input_size(m) for m in models if input_size(m)}
    if len(set(sizes.values())) > 1:
        raise VitscopeError("the models were analysed at different input sizes ("
                            + ", ".join(f"{k}: {pixels(v)}" for k, v in sizes.items())
                            + "); give references analysed at the model's input size")


def pixels(size: Sequence[int] | None) -> str:
    """``(3, 32, 32)`` → ``"32x32 px"``."""
    return f"{'x'.join(map(str, size[1:]))} px" if size else "an unknown size"


def _data_spec(m: ModelResults) -> str | None:
    """The images the model was analysed on (a path that exists here as its absolute path)."""
    spec = (m.analysis or {}).get("data", {}).get("spec")
    return str(Path(spec).resolve()) if spec and Path(spec).exists() else spec


def signature(model: ModelResults, cl: ModelResults, mim: ModelResults,
              compares: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The signature of ``model`` between references ``cl`` and ``mim``: flags, notes and every
    property of :data:`PROPERTIES` (+ CKA to each reference) placed by :func:`place`."""
    check_input_sizes([model, cl, mim])
    flags = {role: f for role, m in (("model", model), ("cl", cl), ("mim", mim)) if (f := looks_untrained(m))}
    notes = []
    data = {role: _data_spec(m) for role, m in (("model", model), ("cl", cl), ("mim", mim))}
    if len({d for d in data.values() if d}) > 1:
        notes.append("analysed on different images: " + ", ".join(f"{k} {v}" for k, v in data.items() if v))
    by_depth = [p for p in PROPERTIES if p.per_depth]
    props = by_depth + [*cka_properties(cl.spec, mim.spec, compares)] + [p for p in PROPERTIES if not p.per_depth]
    return {"spec": model.spec, "folders": model.folders, "flags": flags, "notes": notes,
            "properties": [place(p, model, cl, mim) for p in props]}


def signatures(models: Sequence[ModelResults], cl: ModelResults, mim: ModelResults,
               compares: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """``signature.json``: the signature of each model in ``models`` between ``cl`` and ``mim``."""
    role = lambda r, m: {"role": r, "spec": m.spec, "folders": m.folders, "data": _data_spec(m),  # noqa: E731
                         "input_size": input_size(m)}
    return {"format": SIGNATURE, "version": 1, "formula": FORMULA, "untrained_tolerance": UNTRAINED_TOLERANCE,
            "bands": {"first half": "t = block/L <= 1/2", "later half": "t > 1/2"},
            "models": [role("model", m) for m in models] + [role("cl", cl), role("mim", mim)],
            "signatures": [signature(m, cl, mim, compares) for m in models]}


# ----------------------------------------------------------------------------- reading results

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
        out[Path(folder)] = fam
    if items and set(out.values()) != {"cl", "mim"}:
        raise VitscopeError("--reference needs at least one CL and one MIM results folder (or none, for the zoo's)")
    return out


def read_signature(path: Path) -> dict[str, Any]:
    """A ``signature.json`` written by ``vitscope signature``, checked as every results file is
    (:func:`vitscope.results.read_results`); a one-line error for anything else."""
    return read_results(path, kind=SIGNATURE)


# ----------------------------------------------------------------------------- table

def table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per model × property × depth band: model, property, figure, band, position (or why
    none), the model's, CL's and MIM's raw values, the spread."""
    def num(v: float | None) -> str:
        return "" if v is None else f"{v:.3g}"

    rows = []
    for sig in result["signatures"]:
        for p in sig["properties"]:
            if "missing" in p:
                continue
            for band, b in p["bands"].items():
                pos = "does not separate" if b["position"] is None else f"{round(b['position'], 2) + 0.0:.2f}"  # no -0.00
                rows.append((sig["spec"], p["label"], p["figure"], band, pos, num(b["model"]), num(b["cl"]),
                             num(b["mim"]), num(b["spread"])))
    return rows


HEADER = ("model", "property", "figure", "band", "position s", "x", "x_CL", "x_MIM", "spread")


def _reference_line(result: dict[str, Any]) -> str:
    refs = {m["role"]: m["spec"] for m in result["models"] if m["role"] != "model"}
    return f"CL reference {refs['cl']}, MIM reference {refs['mim']}; {result['formula']}"


def _flag_lines(result: dict[str, Any]) -> list[str]:
    return [f"{sig['spec']}: {role} {text}" for sig in result["signatures"] for role, text in sig["flags"].items()] + \
        [f"{sig['spec']}: {n}" for sig in result["signatures"] for n in sig["notes"]]


def table_text(result: dict[str, Any]) -> str:
    """The table as aligned plain text for the terminal, with flags and notes."""
    rows = [HEADER, *table_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([_reference_line(result), *lines, *(f"! {f}" for f in _flag_lines(result))])


def table_markdown(result: dict[str, Any]) -> str:
    """The table as Markdown (e.g. for docs)."""
    row = lambda r: "| " + " | ".join(r) + " |\n"  # noqa: E731
    return row(HEADER) + row(("---",) * len(HEADER)) + "".join(row(r) for r in table_rows(result))


def table_html(result: dict[str, Any]) -> str:
    """The section of ``vitscope report`` for a ``signature.json``: references, flags, the table."""
    flags = "".join(f"<p><b>⚠ {html.escape(f)}</b></p>" for f in _flag_lines(result))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td class=k>{html.escape(c)}</td>" if i < 4 else f"<td>{html.escape(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in table_rows(result))
    return (f"<h3>CL–MIM signature</h3><p>{html.escape(_reference_line(result))}. Bands: first half "
            f"(block/L ≤ 1/2), later half (block/L &gt; 1/2).</p>{flags}<table><tr>{head}</tr>{body}</table>")


# ----------------------------------------------------------------------------- figure

#: the y range always shows both references (0 and 1) with a margin; values beyond LIMITS are
#: drawn at the edge as triangles, their value written beside them
LIMITS = (-2.0, 3.0)


def y_range(values: Sequence[float]) -> tuple[float, float]:
    """The natural y range of one row: [−0.25, 1.25] widened to the values (+0.15), within :data:`LIMITS`."""
    lo, hi = min([-0.1, *values]) - 0.15, max([1.1, *values]) + 0.15
    return max(lo, LIMITS[0]), min(hi, LIMITS[1])


def _dots(ax: Any, xs: Sequence[float], ys: Sequence[float | None], lim: tuple[float, float], color: str,
          line: bool) -> None:
    """Positions at ``xs`` (``None``: the references do not separate, a grey × on the lower edge);
    values beyond ``lim`` drawn as triangles on the edge with their value written."""
    pos = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if line and pos:
        ax.plot(*zip(*[(x, min(max(y, lim[0]), lim[1])) for x, y in pos]), color=color, lw=1.2)
    for x, y in pos:
        inside = lim[0] <= y <= lim[1]
        marker = "o" if inside else ("^" if y > lim[1] else "v")
        ax.plot(x, min(max(y, lim[0]), lim[1]), marker, color=color, ms=4.5, clip_on=inside)
        if not inside:
            ax.annotate(f"{y:.1f}", (x, min(max(y, lim[0]), lim[1])), fontsize=6.5, color=color,
                        xytext=(4, -3 if y > lim[1] else 1), textcoords="offset points")
    for x, y in zip(xs, ys):
        if y is None:
            ax.plot(x, lim[0] + 0.06 * (lim[1] - lim[0]), "x", color="0.55", ms=5)


def _axis_marks(ax: Any, lim: tuple[float, float]) -> None:
    ax.axhspan(0, 1, color="0.93", zorder=0)
    ax.axhline(1, color="tab:blue", ls="--", lw=0.9)
    ax.axhline(0, color="tab:orange", ls="--", lw=0.9)
    ax.set_ylim(*lim)


def signature_figure(result: dict[str, Any]) -> Any:
    """The figure of a signature (a matplotlib ``Figure``, ``signature.png``): a row per property (title: the property and its paper figure), where each model
    sits between the references (s = 1 CL, dashed blue; s = 0 MIM, dashed orange) by relative depth
    (left) and over the later half or the whole model (right)."""
    import matplotlib.pyplot as plt

    from vitscope.reporting.plots import label_figure

    sigs = result["signatures"]
    keys = [p["key"] for p in sigs[0]["properties"] if any("missing" not in q for s in sigs for q in s["properties"]
                                                          if q["key"] == p["key"])]
    deep = [any(p["key"] == k and p.get("per_depth") for s in sigs for p in s["properties"]) for k in keys]
    heights = [1.0 if d else 0.6 for d in deep]
    fig, axes = plt.subplots(len(keys), 2, figsize=(8.5, 1.25 * sum(heights) + 1.4), squeeze=False, sharey="row",
                             gridspec_kw={"width_ratios": [4, 1], "height_ratios": heights}, layout="constrained")
    colors = [f"C{i}" for i in (2, 3, 4, 5, 6, 7, 8, 9)]
    for row, key in enumerate(keys):
        ax, ax_s = axes[row]
        props = [(next(p for p in s["properties"] if p["key"] == key), colors[i % len(colors)], s["spec"])
                 for i, s in enumerate(sigs)]
        placed = [p for p, *_ in props if "missing" not in p]
        values = [b["position"] for p in placed for b in [*p["per_depth"], *p["bands"].values()]
                  if b["position"] is not None]
        lim = y_range(values)
        for a in (ax, ax_s) if deep[row] else (ax_s,):
            _axis_marks(a, lim)
        ax.set_title(f"{placed[0]['label']} — {placed[0]['figure']}", fontsize=8, loc="left")
        ax_s.text(1.03, 1, "CL", color="tab:blue", fontsize=7, va="center", transform=ax_s.get_yaxis_transform())
        ax_s.text(1.03, 0, "MIM", color="tab:orange", fontsize=7, va="center", transform=ax_s.get_yaxis_transform())
        for i, (p, color, spec) in enumerate(props):
            if "missing" in p:
                continue
            if p["per_depth"]:
                _dots(ax, [d["depth"] for d in p["per_depth"]], [d["position"] for d in p["per_depth"]], lim, color,
                      line=True)
            band = p["bands"].get("later half") or p["bands"].get(WHOLE)
            _dots(ax_s, [i], [band["position"]], lim, color, line=False)
        if deep[row]:
            ax.axvline(0.5, color="0.6", ls=":", lw=0.8)
            ax.set_ylabel("s", fontsize=8)
        else:  # a property of the whole model: its raw values here, its position on the right
            ax.axis("off")
            ax_s.tick_params(labelleft=True)
            ax.text(0, 0.5, "\n".join(f"{spec}: x = {b['model']:.3g}  (x_CL = {b['cl']:.3g}, x_MIM = {b['mim']:.3g})"
                                      for p, _, spec in props if "missing" not in p for b in p["bands"].values()),
                    transform=ax.transAxes, fontsize=7.5, va="center")
        ax.set_xlim(0, 1.02)
        ax_s.set_xlim(-0.7, len(sigs) - 0.3)
        ax_s.set_xticks([])
        ax.tick_params(labelsize=7, labelbottom=row == max(i for i, d in enumerate(deep) if d))
        ax_s.tick_params(labelsize=7)
    axes[max(i for i, d in enumerate(deep) if d), 0].set_xlabel("relative depth (block / L)", fontsize=8)
    axes[0, 1].set_title("later half /\nwhole model", fontsize=7.5)
    for i, s in enumerate(sigs):
        axes[0, 0].plot([], [], "o-", color=colors[i % len(colors)], label=s["spec"] + (
            "  ⚠ looks untrained" if "model" in s["flags"] else ""), ms=4)
    axes[0, 0].plot([], [], "x", color="0.55", label="references do not separate")
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, 1.6), ncols=2, frameon=False)
    refs = {m["role"]: m["spec"] for m in result["models"]}
    label_figure(fig, "each row names its figure in Park et al. 2023 or Shekhar et al. 2023",
                 f"CL–MIM signature: between CL reference {refs['cl']} and MIM reference {refs['mim']}",
                 "each row is one property x, placed at s = (x − x_MIM)/(x_CL − x_MIM): 1 is like the CL reference "
                 "(dashed blue), 0 like the MIM reference (dashed orange), the grey band lies between them; × marks "
                 "where the references differ by less than their spread, so no position is given.")
    return fig
