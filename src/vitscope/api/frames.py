"""Results files as tidy tables: one row per value, with the paper figure it belongs to.

Each ``*_frame`` function reads the dict of one kind of results file (as
:func:`vitscope.results.read_results` gives it) and returns a :class:`pandas.DataFrame` in long
form: a row per block × quantity (× head, × point of a curve), the number in ``value``. Values
are the file's own, unchanged (a spectrum's undefined singular values keep their floor,
``log 1e-300``). Blocks are 1-based; ``0`` is the patch embedding (spectrum, Fourier).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from vitscope.results import probe_accuracies

PARK, SHEKHAR, DARCET = "Park", "Shekhar", "Darcet"

#: (metric, key in the results) → (layout, paper figure). Layouts: ``block`` one value per block,
#: ``head`` a row per head of each block, ``curve`` a row per point of each depth's curve (``x``:
#: singular value index from 1, or frequency ×π), ``depth`` one value per depth (0 = embedding).
ANALYSIS_QUANTITIES: dict[tuple[str, str], tuple[str, str | None]] = {
    ("attention", "distance"): ("block", f"{PARK} Fig. 3"),
    ("attention", "distance_per_head"): ("head", f"{PARK} Fig. 3"),
    ("attention", "nmi"): ("block", f"{PARK} Fig. 4"),
    ("attention", "nmi_per_head"): ("head", f"{PARK} Fig. E.1b"),
    ("attention", "nmi_std_over_heads"): ("block", f"{PARK} Fig. E.1a"),
    ("attention", "entropy"): ("block", None),
    ("attention", "entropy_per_head"): ("head", None),
    ("similarity", "heads_cosine"): ("block", f"{PARK} Fig. 5 left"),
    ("similarity", "depth_cosine"): ("block", f"{PARK} Fig. 5 middle"),
    ("similarity", "tokens_cosine"): ("block", f"{PARK} Fig. 5 right"),
    ("spectrum", "token_log_sv"): ("curve", f"{PARK} Fig. E.3"),
    ("spectrum", "token_delta_log_sv"): ("curve", f"{PARK} Fig. 7 top"),
    ("spectrum", "token_delta_log_sv_2nd"): ("curve", f"{PARK} Fig. 7 top"),
    ("spectrum", "image_log_sv"): ("curve", f"{PARK} Fig. E.3"),
    ("spectrum", "image_delta_log_sv"): ("curve", f"{PARK} Fig. 7 bottom"),
    ("spectrum", "image_delta_log_sv_2nd"): ("curve", f"{PARK} Fig. 7 bottom"),
    ("spectrum", "image_numerical_rank"): ("depth", f"{PARK} Fig. 7 bottom"),
    ("fourier", "delta_log_amplitude"): ("curve", f"{PARK} Fig. 9"),
    ("fourier", "delta_log_amplitude_at_highest"): ("depth", f"{PARK} Fig. 9"),
    ("norms", "median"): ("block", f"{DARCET} Fig. 3"),
    ("norms", "p99"): ("block", f"{DARCET} Fig. 3"),
    ("norms", "mean"): ("block", f"{DARCET} Fig. 3"),
    ("norms", "outlier_fraction"): ("block", f"{DARCET} Fig. 3"),
    ("norms", "images_with_outliers"): ("block", f"{DARCET} Fig. 3"),
    ("norms", "neighbour_cosine_outliers"): ("block", f"{DARCET} Fig. 4a"),
    ("norms", "neighbour_cosine_others"): ("block", f"{DARCET} Fig. 4a"),
    ("norms", "prefix_mean_norm"): ("block", f"{DARCET} Fig. 7"),
}

ANALYSIS_COLUMNS = ["model", "part", "metric", "quantity", "block", "head", "x", "value", "figure"]


def _frame(rows: list[dict[str, Any]], columns: list[str], integers: tuple[str, ...] = ()) -> pd.DataFrame:
    """``rows`` as a frame with exactly ``columns``; ``integers`` as nullable integers (empty = NA)."""
    df = pd.DataFrame(rows, columns=columns)
    for c in integers:
        df[c] = pd.array(df[c], dtype="Int64")
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    return df


def _analysis_rows(metrics: dict[str, Any], model: str, part: str) -> Iterator[dict[str, Any]]:
    for (metric, key), (layout, figure) in ANALYSIS_QUANTITIES.items():
        values = metrics.get(metric, {}).get(key)
        if values is None:
            continue
        quantity = key.removesuffix("_per_head")
        figure = f"{PARK} Fig. 10" if part == "decoder" else figure
        base = {"model": model, "part": part, "metric": metric, "quantity": quantity, "figure": figure}
        if layout in ("block", "depth"):
            first = 1 if layout == "block" else 0
            for b, v in enumerate(values):
                yield {**base, "block": b + first, "value": v}
        elif layout == "head":
            for b, heads in enumerate(values):
                for h, v in enumerate(heads):
                    yield {**base, "block": b + 1, "head": h + 1, "value": v}
        else:
            xs = metrics[metric].get("freqs_over_pi") if metric == "fourier" else None
            for d, curve in enumerate(values):
                for i, v in enumerate(curve):
                    yield {**base, "block": d, "x": xs[i] if xs is not None else i + 1, "value": v}


def analysis_frame(results: dict[str, Any]) -> pd.DataFrame:
    """An analysis ``results.json``: columns ``model, part (encoder | decoder), metric, quantity,
    block, head, x, value, figure``. ``head`` is empty for values over all heads (the per-block
    mean), ``x`` empty but for curves (singular value index from 1, or frequency ×π)."""
    model = str(results["model"].get("spec"))
    metrics = results["metrics"]
    rows = list(_analysis_rows(metrics, model, "encoder"))
    rows += _analysis_rows(metrics.get("decoder", {}), model, "decoder")
    return _frame(rows, ANALYSIS_COLUMNS, ("block", "head"))


TRAJECTORY_COLUMNS = ["step", "epoch", "snapshot", "metric", "quantity", "block", "head", "x", "value", "figure"]


def trajectory_frame(results: dict[str, Any]) -> pd.DataFrame:
    """A ``trajectory.json``: the :func:`analysis_frame` of every snapshot, with its training ``step``,
    ``epoch`` and file (``snapshot``): step × block × quantity (× head, × point of a curve); with a k-NN
    bank also the :func:`probe_frame` rows (``metric`` knn, ``quantity`` accuracy)."""
    frames = [analysis_frame({"model": {"spec": e["path"]}, "metrics": e["metrics"]})
              .assign(step=e["step"], epoch=e.get("epoch"), snapshot=e["path"]) for e in results["snapshots"]]
    frames += [probe_frame(e["probe"]).rename(columns={"method": "metric"})
               .assign(step=e["step"], epoch=e.get("epoch"), snapshot=e["path"])
               for e in results["snapshots"] if e.get("probe")]
    if not frames:
        return _frame([], TRAJECTORY_COLUMNS, ("step", "block", "head"))
    df = pd.concat(frames, ignore_index=True)[TRAJECTORY_COLUMNS]
    df["step"] = pd.array(df["step"], dtype="Int64")
    return df

COMPARISON_COLUMNS = ["model_a", "model_b", "quantity", "layer_type", "block_a", "block_b", "split", "k", "value",
                      "figure"]


def comparison_frame(results: dict[str, Any]) -> pd.DataFrame:
    """A compare ``results.json``: CKA of every layer pair (``quantity`` cka, ``layer_type``,
    ``block_a``, ``block_b``), and the agreement of predictions when measured (``kendall_tau_b``
    per ``split`` and top-``k``, ``top1_f1_macro``, ``top1_agreement``, ``accuracy_a`` / ``_b``)."""
    specs = [m["spec"] for m in results["models"]]
    base = {"model_a": specs[0], "model_b": specs[-1]}
    rows: list[dict[str, Any]] = []
    for layer_type, matrix in results["cka"].items():
        figure = f"{SHEKHAR} Fig. 1" if layer_type == "block" else f"{SHEKHAR} Fig. 2"
        rows += [{**base, "quantity": "cka", "layer_type": layer_type, "block_a": i + 1, "block_b": j + 1,
                  "value": v, "figure": figure} for i, row in enumerate(matrix) for j, v in enumerate(row)]
    agreement = results.get("agreement") or {}
    for split, by_k in agreement.get("kendall_tau_b", {}).items():
        rows += [{**base, "quantity": "kendall_tau_b", "split": split, "k": int(k.removeprefix("top")), "value": v,
                  "figure": f"{SHEKHAR} Fig. 4"} for k, v in by_k.items()]
    for key in ("top1_f1_macro", "top1_agreement"):
        if key in agreement:
            rows.append({**base, "quantity": key, "value": agreement[key], "figure": f"{SHEKHAR} Sec. 2.4"})
    for side, acc in zip("ab", agreement.get("accuracy", [])):
        rows.append({**base, "quantity": f"accuracy_{side}", "value": acc, "figure": None})
    return _frame(rows, COMPARISON_COLUMNS, ("block_a", "block_b", "k"))


PROBE_COLUMNS = ["model", "method", "feature", "quantity", "block", "value", "figure"]
PROBE_FIGURES = {"knn": f"{SHEKHAR} Fig. 3", "linear": f"{PARK} Fig. 11"}


def probe_frame(results: dict[str, Any]) -> pd.DataFrame:
    """A ``probe.json``: accuracy per ``method`` (knn, linear), token ``feature`` and block; the
    probe on the final pooled features has an empty block. Linear probes add ``train_accuracy``."""
    model = str(results.get("provenance", {}).get("model"))
    rows: list[dict[str, Any]] = []

    def add(method: str, feature: str, quantity: str, values: list[float]) -> None:
        pooled = feature == "pooled"
        rows.extend({"model": model, "method": method, "feature": feature, "quantity": quantity,
                     "block": None if pooled else b + 1, "value": v, "figure": PROBE_FIGURES[method]}
                    for b, v in enumerate(values))

    for method, by_feature in probe_accuracies(results).items():
        for feature, values in by_feature.items():
            add(method, feature, "accuracy", values)
    for feature, r in (results.get("linear") or {}).items():
        if isinstance(r, dict) and "train_accuracy" in r:
            add("linear", feature, "train_accuracy", r["train_accuracy"])
    return _frame(rows, PROBE_COLUMNS, ("block",))


ROBUSTNESS_COLUMNS = ["model", "probe", "quantity", "frequency", "category", "value", "figure"]


def robustness_frame(results: dict[str, Any]) -> pd.DataFrame:
    """A robustness ``results.json``: per model, accuracy, drop and noise RMS per noise ``frequency``
    (×π) and the clean accuracy (Park Fig. 8 right); shape bias pooled and per ``category``, and the
    fractions of shape and texture decisions (Fig. 8 left)."""
    freqs = (results.get("noise") or {}).get("frequencies", [])
    rows: list[dict[str, Any]] = []
    for m in results["models"]:
        base = {"model": m["spec"], "probe": m.get("probe")}
        if "noise" in m:
            nz, fig = m["noise"], f"{PARK} Fig. 8 right"
            rows.append({**base, "quantity": "clean_accuracy", "value": nz["clean_accuracy"], "figure": fig})
            rows += [{**base, "quantity": q, "frequency": f, "value": v, "figure": fig}
                     for q in ("accuracy", "drop", "noise_rms") for f, v in zip(freqs, nz[q])]
        if "shape_bias" in m:
            sb, fig = m["shape_bias"], f"{PARK} Fig. 8 left"
            rows += [{**base, "quantity": q, "value": sb[q], "figure": fig}
                     for q in ("shape_bias", "shape_bias_class_mean", "fraction_shape", "fraction_texture")]
            rows += [{**base, "quantity": "shape_bias", "category": c, "value": v["shape_bias"], "figure": fig}
                     for c, v in sb["per_class"].items()]
    return _frame(rows, ROBUSTNESS_COLUMNS)


INSPECTION_COLUMNS = ["label", "quantity", "block", "head", "component", "value", "figure"]


def inspection_frame(results: dict[str, Any]) -> pd.DataFrame:
    """An ``inspect.json``: the per-head NMI of the KDE's block for each run (Park Fig. E.1b), the
    variance each PCA component explains of the tokens before/after attention (Fig. 6) and the
    t-SNE's KL divergence (Fig. E.2)."""
    rows: list[dict[str, Any]] = []
    kde = results.get("nmi_kde")
    if kde:
        rows += [{"label": r["label"], "quantity": "nmi", "block": kde["block"], "head": h + 1, "value": v,
                  "figure": f"{PARK} Fig. E.1b"} for r in kde["runs"] for h, v in enumerate(r["nmi_per_head"])]
    label = str(results.get("model"))
    tokens = results.get("tokens_before_after")
    if tokens:
        rows += [{"label": label, "quantity": "explained_variance_ratio", "block": tokens["block"], "component": i + 1,
                  "value": v, "figure": f"{PARK} Fig. 6"} for i, v in enumerate(tokens["explained_variance_ratio"])]
    tsne = results.get("tsne")
    if tsne:
        rows.append({"label": label, "quantity": "tsne_kl_divergence", "block": tsne["block"],
                     "value": tsne["kl_divergence"], "figure": f"{PARK} Fig. E.2"})
    return _frame(rows, INSPECTION_COLUMNS, ("block", "head", "component"))


FINETUNE_COLUMNS = ["model", "quantity", "epoch", "value", "figure"]


def finetune_frame(results: dict[str, Any]) -> pd.DataFrame:
    """A ``finetune.json``: training loss and validation accuracy per epoch (Park Fig. 1 left; with
    re-initialised blocks Fig. F.3)."""
    model = str(results.get("provenance", {}).get("model"))
    figure = f"{PARK} Fig. F.3" if results.get("reinit_blocks") else f"{PARK} Fig. 1 left"
    rows = [{"model": model, "quantity": q, "epoch": h["epoch"], "value": h[q], "figure": figure}
            for h in results.get("history", []) for q in ("train_loss", "val_accuracy")]
    return _frame(rows, FINETUNE_COLUMNS, ("epoch",))


PRETRAIN_COLUMNS = ["method", "model", "quantity", "step", "epoch", "value"]
#: What a log record holds besides the numbers to tabulate.
_NOT_QUANTITIES = ("step", "epoch", "time")


def pretrain_frame(results: dict[str, Any]) -> pd.DataFrame:
    """A ``pretrain.json``: every logged quantity (loss, lr, img_per_s, the hybrid's loss parts,
    DINO's teacher entropy and KL, ...) per logged step (training curves, not a paper figure)."""
    method, model = results["config"]["method"], results["config"]["model"]
    rows = [{"method": method, "model": model, "quantity": q, "step": r["step"], "epoch": r["epoch"], "value": v}
            for r in results["log"] for q, v in r.items() if q not in _NOT_QUANTITIES]
    return _frame(rows, PRETRAIN_COLUMNS, ("step",))


SIGNATURE_COLUMNS = ["model", "property", "key", "figure", "band", "block", "depth", "separates", "quantity",
                     "value"]
#: The numbers of one placement: the position s and the three raw values it comes from, the spread.
PLACEMENT = ("position", "model", "cl", "mim", "spread")


def signature_frame(results: dict[str, Any]) -> pd.DataFrame:
    """A ``signature.json``: per model, property and block (``depth`` = block / L; ``band`` empty) or
    depth band (``block`` empty), the position s and the raw values x, x_CL, x_MIM and the spread, as
    ``quantity`` rows; ``separates`` as recorded (None where no spread is recorded). Properties that
    lack results have no rows."""
    rows = []
    for sig in results.get("signatures", []):
        for p in sig["properties"]:
            if "missing" in p:
                continue
            head = {"model": sig["spec"], "property": p["label"], "key": p["key"], "figure": p["figure"]}
            places = [({"block": d["block"], "depth": d["depth"]}, d) for d in p["per_depth"]] + \
                     [({"band": band}, b) for band, b in p["bands"].items()]
            rows += [{**head, **where, "separates": b["separates"], "quantity": q, "value": b[q]}
                     for where, b in places for q in PLACEMENT]
    return _frame(rows, SIGNATURE_COLUMNS, ("block",))


def matrix(rows: list[list[float | None]]) -> np.ndarray:
    """A results file's nested list as a float array, ``None`` (undefined) as NaN."""
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)
