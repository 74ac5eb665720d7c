"""The CL–MIM signature, its math: where a model sits between a contrastive and a masked-modelling reference.

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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitscope.errors import VitscopeError
from vitscope.reporting.findings import mean_log
from vitscope.results import SIGNATURE, probe_accuracies


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
    return {"format": SIGNATURE, "formula": FORMULA, "untrained_tolerance": UNTRAINED_TOLERANCE,
            "bands": {"first half": "t = block/L <= 1/2", "later half": "t > 1/2"},
            "models": [role("model", m) for m in models] + [role("cl", cl), role("mim", mim)],
            "signatures": [signature(m, cl, mim, compares) for m in models]}
