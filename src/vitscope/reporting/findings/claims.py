"""The papers' claims, checked on saved results: one table (:data:`CLAIMS`), each claim a small pure test.

Each claim's test reads an :class:`~vitscope.reporting.findings.folders.Evidence` (everything the
folders hold, by family) and returns a :class:`Verdict`: ``holds`` / ``does not hold`` / ``not
enough data`` and the numbers behind it. When several models share a family, a comparison holds
only if it holds for every CL × MIM pair. Blocks: "later half" = blocks ⌊L/2⌋+1…L, "first
quarter" = blocks 1…⌈L/4⌉, "last quarter" = the last ⌈L/4⌉ blocks (1-based, as in the figures).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vitscope.reporting.findings.folders import Evidence, Model

HOLDS, FAILS, NO_DATA = "holds", "does not hold", "not enough data"
#: A fine-tuning claim whose fine-tuned models do not all beat their own linear probes: the
#: fine-tuning did not reach what a frozen encoder gives, so comparing it says nothing.
NOT_MEANINGFUL = "not meaningful"


@dataclass(frozen=True)
class Verdict:
    status: str
    numbers: str


@dataclass(frozen=True)
class Claim:
    paper: str
    figure: str
    statement: str
    test: Callable[[Evidence], Verdict]


# ----------------------------------------------------------------------------- block ranges

def later_half(v: Sequence[float]) -> float:
    return float(np.mean(v[len(v) // 2:]))


def first_quarter(v: Sequence[float]) -> float:
    return float(np.mean(v[: math.ceil(len(v) / 4)]))


def last_quarter(v: Sequence[float]) -> float:
    return float(np.mean(v[-math.ceil(len(v) / 4):]))


def mean_log(rows: list[list[float]]) -> list[float]:
    """Mean log singular value per depth over the defined (finite) values: the log volume."""
    return [float(np.mean([x for x in row if x is not None and x > -600])) for row in rows]


# ----------------------------------------------------------------------------- comparisons

def contrast(items_a: list[Model], items_b: list[Model], value: Callable[[Any], float | None], bigger: str,
             fmt: str = "{:.3f}", names: tuple[str, str] = ("CL", "MIM")) -> Verdict:
    """Holds when ``value`` of every model in ``items_a`` exceeds (``bigger="a"``) or falls
    below (``bigger="b"``) that of every model in ``items_b``."""
    va = [(m.label, value(m.data)) for m in items_a]
    vb = [(m.label, value(m.data)) for m in items_b]
    va, vb = [(k, v) for k, v in va if v is not None], [(k, v) for k, v in vb if v is not None]
    if not va or not vb:
        return Verdict(NO_DATA, f"needs results of both {names[0]} and {names[1]} models")
    ok = all((a > b) if bigger == "a" else (a < b) for _, a in va for _, b in vb)
    text = "; ".join(f"{names[0]} {k}: {fmt.format(v)}" for k, v in va) + " vs " + \
           "; ".join(f"{names[1]} {k}: {fmt.format(v)}" for k, v in vb)
    return Verdict(HOLDS if ok else FAILS, text)


def cl_vs_mim(kind: str, value: Callable[[Any], float | None], bigger: str, fmt: str = "{:.3f}"
              ) -> Callable[[Evidence], Verdict]:
    return lambda ev: contrast(ev.of(kind, "cl"), ev.of(kind, "mim"), value, bigger, fmt)


def hybrid_beats_both(kind: str, value: Callable[[Any], float | None]) -> Callable[[Evidence], Verdict]:
    def test(ev: Evidence) -> Verdict:
        hyb = ev.of(kind, "hybrid")
        others = ev.of(kind, "cl") + ev.of(kind, "mim")
        if not ev.of(kind, "cl") or not ev.of(kind, "mim"):
            return Verdict(NO_DATA, "needs results of hybrid, CL and MIM models")
        return contrast(hyb, others, value, "a", names=("hybrid", "CL/MIM"))
    return test


def _probe(method: str, feature: str, where: Callable[[Sequence[float]], float]) -> Callable[[Any], float | None]:
    def value(acc: dict[str, dict[str, list[float]]]) -> float | None:
        per_block = acc.get(method, {}).get(feature)
        return where(per_block) if per_block else None
    return value


def _last(v: Sequence[float]) -> float:
    return float(v[-1])


def _finetune(reinit: str) -> Callable[[Any], float | None]:
    """Accuracy of a fine-tuning run: ``""`` plain, ``"first"``/``"last"`` with re-initialised blocks."""
    def value(r: dict[str, Any]) -> float | None:
        blocks = r.get("reinit_blocks") or []
        kind = "" if not blocks else ("first" if min(blocks) == 0 else "last")
        return float(r["accuracy"]) if kind == reinit else None
    return value


def finetuning_claim(test: Callable[[Evidence], Verdict]) -> Callable[[Evidence], Verdict]:
    """``test``, unless a plainly fine-tuned model ends below its own model's linear probe (last
    block, CLS; the probe whose key the fine-tuning run's key contains): then ``not meaningful``."""
    def checked(ev: Evidence) -> Verdict:
        verdict = test(ev)
        below = []
        for ft in ev.finetune:
            acc = _finetune("")(ft.data)
            probes = [p for p in ev.probe if p.key and p.key in ft.key]
            lin = [v for p in probes if (v := _probe("linear", "cls", _last)(p.data)) is not None]
            if acc is not None and lin and acc < max(lin):
                below.append(f"{ft.label} {acc:.3f} < linear probe {max(lin):.3f}")
        if verdict.status == NO_DATA or not below:
            return verdict
        return Verdict(NOT_MEANINGFUL, f"{verdict.numbers} — fine-tuned below the linear probe: {'; '.join(below)}")
    return checked


def reinit_drop(family_more: str, reinit: str) -> Callable[[Evidence], Verdict]:
    """Fig. F.3: re-initialising the ``reinit`` blocks costs ``family_more`` more accuracy than the other."""
    def drops(ev: Evidence, fam: str) -> list[Model]:
        runs = ev.of("finetune", fam)
        plain = [v for m in runs if (v := _finetune("")(m.data)) is not None]
        hit = [(m.label, v) for m in runs if (v := _finetune(reinit)(m.data)) is not None]
        return [Model(k, fam, max(plain) - v) for k, v in hit] if plain else []

    def test(ev: Evidence) -> Verdict:
        other = "mim" if family_more == "cl" else "cl"
        return contrast(drops(ev, family_more), drops(ev, other), lambda d: d, "a", "{:.3f}",
                        (family_more.upper() + " drop", other.upper() + " drop"))
    return test


def _diag(matrix: list[list[float]]) -> list[float]:
    n = min(len(matrix), len(matrix[0]))
    return [matrix[i][i] for i in range(n)]


def _cl_mim_pairs(ev: Evidence, a: str = "cl", b: str = "mim") -> list[tuple[str, dict[str, Any]]]:
    return [(label, r) for label, fa, fb, r, *_ in ev.compare if {fa, fb} == {a, b}]


def cka_early_vs_late(ev: Evidence) -> Verdict:
    pairs = _cl_mim_pairs(ev)
    if not pairs:
        return Verdict(NO_DATA, "needs a `vitscope compare` of a CL and a MIM model")
    vals = [(label, first_quarter(_diag(r["cka"]["block"])), last_quarter(_diag(r["cka"]["block"])))
            for label, r in pairs if "block" in r["cka"]]
    if not vals:
        return Verdict(NO_DATA, "the comparisons have no block-output CKA")
    ok = all(e > l for _, e, l in vals)
    return Verdict(HOLDS if ok else FAILS, "; ".join(f"{k}: diagonal CKA first quarter {e:.3f}, last quarter {l:.3f}"
                                                      for k, e, l in vals))


def cka_fc1_above_attention(ev: Evidence) -> Verdict:
    pairs = [(k, r) for k, r in _cl_mim_pairs(ev) if {"fc1", "qkv", "ln1"} <= set(r["cka"])]
    if not pairs:
        return Verdict(NO_DATA, "needs a `vitscope compare` of a CL and a MIM model with fc1, qkv and ln1")
    rows, ok = [], True
    for label, r in pairs:
        m = {t: float(np.mean(_diag(r["cka"][t]))) for t in ("fc1", "qkv", "ln1")}
        ok &= m["fc1"] > m["qkv"] and m["fc1"] > m["ln1"]
        rows.append(f"{label}: mean diagonal CKA fc1 {m['fc1']:.3f}, qkv {m['qkv']:.3f}, ln1 {m['ln1']:.3f}")
    return Verdict(HOLDS if ok else FAILS, "; ".join(rows))


def cl_pair_above_cl_mim(value: Callable[[dict[str, Any]], float | None], what: str, fmt: str = "{:.3f}"
                         ) -> Callable[[Evidence], Verdict]:
    """Holds when ``value`` of every CL–CL comparison exceeds that of every CL–MIM comparison."""
    def test(ev: Evidence) -> Verdict:
        def values(pairs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, float]]:
            return [(label, v) for label, r in pairs if (v := value(r)) is not None]
        cc, cm = values(_cl_mim_pairs(ev, "cl", "cl")), values(_cl_mim_pairs(ev))
        if not cc or not cm:
            return Verdict(NO_DATA, f"needs {what} of two CL models and of a CL and a MIM model")
        ok = min(v for _, v in cc) > max(v for _, v in cm)

        def listed(items: list[tuple[str, float]]) -> str:
            return ", ".join(f"{k} {fmt.format(v)}" for k, v in items)
        return Verdict(HOLDS if ok else FAILS, f"{what}: CL–CL {listed(cc)} vs CL–MIM {listed(cm)}")
    return test


def _agreement(path: Callable[[dict[str, Any]], float | None]) -> Callable[[dict[str, Any]], float | None]:
    return lambda r: path(r["agreement"]) if r.get("agreement") else None


def tau_cl_pairs_higher(ev: Evidence) -> Verdict:
    """Shekhar Fig. 4a: τ-b of the top-k rankings, CL–CL above CL–MIM for every k measured (5, 10, 100
    where the classes allow)."""
    ks = sorted({k for *_, r, _, _ in ev.compare if r.get("agreement")
                 for k, v in r["agreement"]["kendall_tau_b"]["all"].items() if v is not None},
                key=lambda k: int(k.removeprefix("top")))
    if not ks:
        return Verdict(NO_DATA, "needs prediction agreement of two CL models and of a CL and a MIM model")
    verdicts = [cl_pair_above_cl_mim(_agreement(lambda a, k=k: a["kendall_tau_b"]["all"].get(k)),
                                     f"τ-b {k.replace('top', 'top-')}")(ev) for k in ks]
    status = NO_DATA if any(v.status == NO_DATA for v in verdicts) else \
        HOLDS if all(v.status == HOLDS for v in verdicts) else FAILS
    return Verdict(status, "; ".join(v.numbers for v in verdicts))


def _diag_before_last_quarter(r: dict[str, Any]) -> float | None:
    """Mean diagonal CKA of block outputs over the blocks before the last quarter."""
    if "block" not in r.get("cka", {}):
        return None
    d = _diag(r["cka"]["block"])
    return float(np.mean(d[: len(d) - math.ceil(len(d) / 4)]))


def cl_pair_diverges_late(ev: Evidence) -> Verdict:
    """Shekhar Fig. 1a: two CL models correspond strongly except in the last blocks — per CL–CL pair,
    diagonal CKA of the last quarter below that of the blocks before it."""
    pairs = [(label, r) for label, r in _cl_mim_pairs(ev, "cl", "cl") if "block" in r.get("cka", {})]
    if not pairs:
        return Verdict(NO_DATA, "needs a `vitscope compare` of two CL models")
    rows = [(label, _diag_before_last_quarter(r), last_quarter(_diag(r["cka"]["block"]))) for label, r in pairs]
    ok = all(late < early for _, early, late in rows)
    return Verdict(HOLDS if ok else FAILS, "; ".join(f"{k}: diagonal CKA before the last quarter {e:.3f}, "
                                                      f"last quarter {l:.3f}" for k, e, l in rows))


def finetuned_mim_nears_cl(ev: Evidence) -> Verdict:
    """Per MIM model X (key ``x``) and CL model C: CKA(C, X fine-tuned) > CKA(C, X), where the
    fine-tuned model's key contains ``x`` (``ft-simmim`` for ``simmim``)."""
    def by_mim(fam: str) -> dict[tuple[str, str], float]:
        out = {}
        for _, fa, fb, r, ka, kb in ev.compare:
            if {fa, fb} == {"cl", fam} and "block" in r["cka"]:
                cl_key, mim_key = (ka, kb) if fa == "cl" else (kb, ka)
                out[cl_key, mim_key] = float(np.mean(_diag(r["cka"]["block"])))
        return out
    before, after = by_mim("mim"), by_mim("mim-ft")
    pairs = [(c, m, before[c, m], v) for (c, f), v in after.items() for (c2, m) in before if c2 == c and m in f]
    if not pairs:
        return Verdict(NO_DATA, "needs CKA of a CL model vs a MIM model and vs that MIM model fine-tuned "
                                "(family mim-ft, key containing the MIM model's key)")
    ok = all(a > b for *_, b, a in pairs)
    return Verdict(HOLDS if ok else FAILS, "; ".join(f"mean diagonal CKA {c} vs {m}: {b:.3f} before, {a:.3f} after "
                                                      f"fine-tuning {m}" for c, m, b, a in pairs))


def hybrid_nmi_falls_at_end(ev: Evidence) -> Verdict:
    hyb = ev.of("analysis", "hybrid")
    if not hyb:
        return Verdict(NO_DATA, "needs an analysis of a hybrid model")
    rows, ok = [], True
    for m in hyb:
        nmi = m.data["attention"]["nmi"]
        q = math.ceil(len(nmi) / 4)
        end, rest = last_quarter(nmi), max(nmi[:-q])
        ok &= end < rest
        rows.append(f"{m.label}: NMI last quarter {end:.3f}, peak before it {rest:.3f}")
    return Verdict(HOLDS if ok else FAILS, "; ".join(rows))


def _attn(key: str, where: Callable[[Sequence[float]], float]) -> Callable[[Any], float | None]:
    return lambda m: where(m["attention"][key]) if "attention" in m else None


def _sim(key: str) -> Callable[[Any], float | None]:
    def value(m: Any) -> float | None:
        v = (m.get("similarity") or {}).get(key)
        return later_half(v) if v and None not in v else None
    return value


def _volume_change(key: str) -> Callable[[Any], float | None]:
    """Change of the log volume (mean log singular value) from the embedding to the last block."""
    def value(m: Any) -> float | None:
        if "spectrum" not in m:
            return None
        vol = mean_log(m["spectrum"][key])
        return vol[-1] - vol[0]
    return value


def _image_volume_change(m: Any) -> float | None:
    """Fig. 7 bottom: change of the mean log singular value of the GAP vectors from the embedding to
    the last block, over the top r values with r the smaller numerical rank of the two depths
    (``image_numerical_rank``): values below it are rounding noise that moves with the solver.
    Results without numerical ranks (older vitscope) give no value."""
    spec = m.get("spectrum") or {}
    ranks, rows = spec.get("image_numerical_rank"), spec.get("image_log_sv")
    if not ranks or not rows:
        return None
    r = min(ranks[0], ranks[-1])
    return float(np.mean(rows[-1][:r]) - np.mean(rows[0][:r])) if r else None


def _high_freq(m: Any) -> float | None:
    """Mean over blocks of ΔlogAmplitude at the highest frequency (π on even grids)."""
    return float(np.mean(m["fourier"]["delta_log_amplitude_at_highest"][1:])) if "fourier" in m else None


def _shape_bias(m: dict[str, Any]) -> float | None:
    return float(m["shape_bias"]["shape_bias"]) if "shape_bias" in m else None


def _high_freq_drop(m: dict[str, Any]) -> float | None:
    return float(m["noise"]["drop"][-1]) if "noise" in m else None


PARK, SHEKHAR = "Park et al. 2023", "Shekhar et al. 2023"

#: The papers' claims, each with its figure and the test that checks it on saved results.
CLAIMS: tuple[Claim, ...] = (
    Claim(PARK, "Fig. 3", "CL attends more globally than MIM: larger attention distance in the later half",
          cl_vs_mim("analysis", _attn("distance", later_half), "a", "{:.1f} px")),
    Claim(PARK, "Fig. 4", "CL attention collapses to one map for all queries: lower NMI than MIM in the later half",
          cl_vs_mim("analysis", _attn("nmi", later_half), "b")),
    Claim(PARK, "Fig. 5 left", "CL heads are more alike than MIM's in the later half (cosine between heads)",
          cl_vs_mim("analysis", _sim("heads_cosine"), "a")),
    Claim(PARK, "Fig. 5 middle", "CL self-attention changes tokens less than MIM's in the later half "
                                 "(cosine before vs after attention)", cl_vs_mim("analysis", _sim("depth_cosine"), "a")),
    Claim(PARK, "Fig. 5 right", "CL tokens are more alike than MIM's in the later half (cosine between tokens)",
          cl_vs_mim("analysis", _sim("tokens_cosine"), "a")),
    Claim(PARK, "Fig. 7 top", "CL grows the volume of one image's tokens less than MIM "
                              "(change of mean log singular value, embedding → last block)",
          cl_vs_mim("analysis", _volume_change("token_log_sv"), "b")),
    Claim(PARK, "Fig. 7 bottom", "CL grows the volume of the image set more than MIM "
                                 "(change of mean log singular value of GAP vectors, embedding → last block, "
                                 "within the numerical rank)",
          cl_vs_mim("analysis", _image_volume_change, "a")),
    Claim(PARK, "Fig. 9", "CL keeps less high frequency than MIM (ΔlogAmplitude at the highest frequency, "
                          "mean over blocks)", cl_vs_mim("analysis", _high_freq, "b")),
    Claim(PARK, "Fig. 8 left", "CL is more shape-biased than MIM (cue-conflict shape bias)",
          cl_vs_mim("robustness", _shape_bias, "a")),
    Claim(PARK, "Fig. 8 right", "MIM loses more accuracy than CL under the highest-frequency noise",
          cl_vs_mim("robustness", _high_freq_drop, "b")),
    Claim(PARK, "Fig. 1 left", "CL beats MIM in linear probing (last block, CLS)",
          cl_vs_mim("probe", _probe("linear", "cls", _last), "a")),
    Claim(PARK, "Fig. 1 left", "MIM beats CL in fine-tuning",
          finetuning_claim(cl_vs_mim("finetune", _finetune(""), "b"))),
    Claim(PARK, "Fig. 11", "Later layers of CL matter: CL beats MIM in linear probing of the last quarter (GAP)",
          cl_vs_mim("probe", _probe("linear", "gap", last_quarter), "a")),
    Claim(PARK, "Fig. 11", "Early layers of MIM matter: MIM beats CL in linear probing of the first quarter (GAP)",
          cl_vs_mim("probe", _probe("linear", "gap", first_quarter), "b")),
    Claim(PARK, "Fig. F.3", "Re-initialising the last blocks costs CL more fine-tuning accuracy than MIM",
          finetuning_claim(reinit_drop("cl", "last"))),
    Claim(PARK, "Fig. F.3", "Re-initialising the first blocks costs MIM more fine-tuning accuracy than CL",
          finetuning_claim(reinit_drop("mim", "first"))),
    Claim(PARK, "Fig. 12 left", "CL + MIM beats both in linear probing (last block, CLS)",
          hybrid_beats_both("probe", _probe("linear", "cls", _last))),
    Claim(PARK, "Fig. 12 left", "CL + MIM beats both in fine-tuning",
          finetuning_claim(hybrid_beats_both("finetune", _finetune("")))),
    Claim(PARK, "Fig. 12 middle", "CL + MIM attention NMI falls at the end of the model", hybrid_nmi_falls_at_end),
    Claim(SHEKHAR, "Fig. 1a", "Two CL models correspond more closely than a CL and a MIM model (mean diagonal "
                              "CKA of block outputs before the last quarter)",
          cl_pair_above_cl_mim(_diag_before_last_quarter, "mean diagonal CKA before the last quarter")),
    Claim(SHEKHAR, "Fig. 1a", "Two CL models correspond strongly except in the last blocks (diagonal CKA, "
                              "last quarter below the blocks before it)", cl_pair_diverges_late),
    Claim(SHEKHAR, "Fig. 1", "CL and MIM models correspond in early layers and diverge later "
                             "(diagonal CKA of block outputs, first vs last quarter)", cka_early_vs_late),
    Claim(SHEKHAR, "Fig. 2", "Across CL and MIM, fc1 layers are more alike than attention (qkv) and LayerNorm layers",
          cka_fc1_above_attention),
    Claim(SHEKHAR, "Fig. 3", "CL's last block holds more class information: higher 20-NN accuracy (CLS)",
          cl_vs_mim("probe", _probe("knn", "cls", _last), "a")),
    Claim(SHEKHAR, "Fig. 4", "Two CL models rank classes more alike than a CL and a MIM model (Kendall τ-b of "
                             "the top-5/10/100 rankings, every k)", tau_cl_pairs_higher),
    Claim(SHEKHAR, "Sec. 2.4", "Two CL models agree more on top-1 predictions than a CL and a MIM model "
                               "(macro F1 of one model's predictions against the other's)",
          cl_pair_above_cl_mim(_agreement(lambda a: a.get("top1_f1_macro")), "top-1 F1")),
    Claim(SHEKHAR, "Fig. 5", "Fine-tuning makes a MIM model more like the CL model (mean diagonal CKA)",
          finetuned_mim_nears_cl),
)


def check_claims(ev: Evidence) -> list[tuple[Claim, Verdict]]:
    """Every claim of :data:`CLAIMS` with its verdict on ``ev``."""
    return [(c, c.test(ev)) for c in CLAIMS]


def undecided_by(ev: Evidence) -> list[str]:
    """What results ``ev`` lacks that the claims it leaves at :data:`NO_DATA` need, in words (the
    report names them in one line above the undecided claims)."""
    def both(kind: str) -> bool:
        return bool(ev.of(kind, "cl") and ev.of(kind, "mim"))

    pairs = {frozenset((a, b)) for _, a, b, *_ in ev.compare}
    needs = (("robustness of a CL and a MIM model", both("robustness")),
             ("probes of a CL and a MIM model", both("probe")),
             ("fine-tuning", bool(ev.finetune)),
             ("a compare of a CL and a MIM model", frozenset(("cl", "mim")) in pairs),
             ("a second CL model (a compare of two CL models)", frozenset(("cl",)) in pairs),
             ("a hybrid model", any(ev.of(kind, "hybrid") for kind in ("analysis", "probe", "finetune"))))
    return [what for what, held in needs if not held]
