"""The result classes, one per kind of results file (:data:`KINDS`), on the base :class:`~vitscope.api.result.Result`
(each knows its table, :mod:`vitscope.api.frames`, its figures and the files it saves), and the
results files read back into them: :func:`read`, :func:`as_result`; :func:`plot` overlays analyses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from vitscope.api import frames
from vitscope.api.result import PathLike, Result
from vitscope.errors import VitscopeError
from vitscope.results import (
    ANALYSIS,
    COMPARE,
    FINETUNE,
    INSPECT,
    PRETRAIN,
    PROBE,
    READERS,
    ROBUSTNESS,
    SIGNATURE,
    TRAJECTORY,
    kind_of,
    missing_keys,
    probe_accuracies,
    read_results,
    write_atomic,
    write_results,
)


class Analysis(Result):
    """Per-layer metrics of one model over an image set (``vitscope analyze``, ``results.json``)."""

    kind = ANALYSIS

    @property
    def metrics(self) -> dict[str, Any]:
        """The ``metrics`` mapping: ``{"attention": {...}, "similarity": ..., "spectrum": ..., "fourier": ...}``."""
        return self.results["metrics"]

    def to_frame(self) -> pd.DataFrame:
        """Columns ``model, part, metric, quantity, block, head, x, value, figure``
        (:func:`vitscope.api.frames.analysis_frame`)."""
        return frames.analysis_frame(self.results)

    def plot(self, metric: str | None = None, label: str | None = None) -> Figure:
        """The figure of ``metric`` (attention, similarity, spectrum, fourier, norms; default the first the
        results hold), as ``vitscope analyze`` writes it to ``<metric>.png``."""
        return plot([self], metric=metric, labels=[label or self.label])

    def save(self, out: PathLike, plots: bool = True) -> Path:
        """``out/results.json`` and, with ``plots``, one PNG per metric, as ``vitscope analyze`` writes them."""
        return self._save(out, lambda folder: self._write(folder, plots))

    def _write(self, out: Path, plots: bool = True) -> None:
        from vitscope.reporting.plots import plot_all

        super()._write(out)
        if plots:
            plot_all([(self.label, self.metrics)], out)

    def summary(self) -> dict[str, str]:
        return {**super().summary(), "metrics": ", ".join(m for m in self.metrics if m != "decoder")}


class Comparison(Result):
    """Minibatch CKA of every layer pair and the agreement of two models (``vitscope compare``)."""

    kind = COMPARE

    @property
    def label(self) -> str:
        return " vs ".join(m["spec"] for m in self.results["models"])

    def cka(self, layer_type: str = "block") -> Any:
        """The CKA matrix of ``layer_type`` as a float array ``[layers of A, layers of B]`` (NaN: undefined)."""
        if layer_type not in self.results["cka"]:
            raise VitscopeError(f"no CKA of layer type '{layer_type}'. Valid options are: {list(self.results['cka'])}")
        return frames.matrix(self.results["cka"][layer_type])

    def to_frame(self) -> pd.DataFrame:
        """Columns ``model_a, model_b, quantity, layer_type, block_a, block_b, split, k, value, figure``
        (:func:`vitscope.api.frames.comparison_frame`)."""
        return frames.comparison_frame(self.results)

    def plot(self, layer_type: str | None = None) -> Figure:
        """The CKA heat map of ``layer_type`` (default: every layer type side by side, ``cka_all.png``)."""
        from vitscope.comparison.plots import comparison_figure
        from vitscope.reporting.plots import detached

        if layer_type is not None:
            self.cka(layer_type)  # a wrong name is one line
        return detached(comparison_figure(self.results, [layer_type] if layer_type else None))

    def _write(self, out: Path) -> None:
        from vitscope.comparison.plots import plot_compare

        super()._write(out)
        plot_compare(self.results, out)

    def summary(self) -> dict[str, str]:
        facts = {**super().summary(), "model": self.label}
        if "block" in self.results["cka"]:
            diag = self.cka("block").diagonal()
            facts["CKA of block outputs, mean of the diagonal"] = f"{float(diag.mean()):.3f}"
        return facts


class Probe(Result):
    """k-NN and linear probes after every block (``vitscope probe``, ``probe.json``); ``probe_state``:
    the saved probe (``probe.pt``) when one was asked for."""

    kind = PROBE
    file = "probe.json"

    def __init__(self, results: Mapping[str, Any], folder: PathLike | None = None,
                 probe_state: dict[str, Any] | None = None) -> None:
        super().__init__(results, folder)
        self.probe_state = probe_state

    @property
    def label(self) -> str:
        return str(self.results.get("provenance", {}).get("model"))

    def to_frame(self) -> pd.DataFrame:
        """Columns ``model, method, feature, quantity, block, value, figure``
        (:func:`vitscope.api.frames.probe_frame`)."""
        return frames.probe_frame(self.results)

    def plot(self, method: str | None = None) -> Figure:
        """Accuracy per block of ``method`` (knn or linear; default the first the results hold)."""
        from vitscope.eval.plots import probe_figure, probe_methods
        from vitscope.reporting.plots import detached

        methods = probe_methods(self.results)
        if method is not None and method not in methods:
            raise VitscopeError(f"no '{method}' probe in these results. Valid options are: {methods}")
        return detached(probe_figure(self.results, method or methods[0]))

    def save(self, out: PathLike) -> Path:
        """``probe.json``, ``knn.png`` / ``linear.png`` and the saved probe ``probe.pt`` (its path recorded
        in ``results["saved_probe"]``), as ``vitscope probe`` writes them; not the feature cache."""
        out = super().save(out)
        if self.probe_state is not None:
            self.results["saved_probe"]["path"] = str(out / "probe.pt")
        return out

    def _write(self, out: Path) -> None:
        from vitscope.eval.linear_probe import save_probe
        from vitscope.eval.plots import plot_probe

        results = self.results
        if self.probe_state is not None:
            save_probe(out / "probe.pt", self.probe_state)
            results = {**results, "saved_probe": {**results["saved_probe"], "path": str(out / "probe.pt")}}
        write_results(out / self.file, results)
        plot_probe(results, out)

    def summary(self) -> dict[str, str]:
        prov = self.results.get("provenance", {})
        facts = {"model": self.label, "data": f"train {prov.get('train_data')} ({prov.get('train_images')} images), "
                                              f"val {prov.get('val_data')} ({prov.get('val_images')} images)"}
        for method, acc in probe_accuracies(self.results).items():
            if acc.get("cls"):
                facts[f"{method} accuracy, last block, CLS"] = f"{acc['cls'][-1]:.3f}"
        return {**facts, **({"folder": str(self.folder)} if self.folder else {})}


class Robustness(Result):
    """Accuracy under frequency-band noise and cue-conflict shape bias (``vitscope robustness``)."""

    kind = ROBUSTNESS

    @property
    def label(self) -> str:
        return ", ".join(m["spec"] for m in self.results["models"])

    def to_frame(self) -> pd.DataFrame:
        """Columns ``model, probe, quantity, frequency, category, value, figure``
        (:func:`vitscope.api.frames.robustness_frame`)."""
        return frames.robustness_frame(self.results)

    def plot(self, which: str | None = None) -> Figure:
        """``noise_drop`` or ``shape_bias`` (default the first the results hold)."""
        from vitscope.perturbation.plots import FIGURES, figure_names
        from vitscope.reporting.plots import detached

        names = figure_names(self.results)
        if which is not None and which not in names:
            raise VitscopeError(f"no '{which}' figure of these results. Valid options are: {names}")
        return detached(FIGURES[which or names[0]](self.results))

    def _write(self, out: Path) -> None:
        from vitscope.perturbation.plots import plot_all

        super()._write(out)
        plot_all(self.results, out)


class Inspection(Result):
    """Single-image views (``vitscope inspect``, ``inspect.json``) and the files drawn of them:
    ``files`` maps each file name to a figure, the explorer page's HTML, or the file on disk."""

    kind = INSPECT
    file = "inspect.json"

    def __init__(self, results: Mapping[str, Any], folder: PathLike | None = None,
                 files: Mapping[str, Any] | None = None) -> None:
        super().__init__(results, folder)
        self.files: dict[str, Any] = dict(files or {})

    @property
    def label(self) -> str:
        return str(self.results.get("model"))

    def to_frame(self) -> pd.DataFrame:
        """Columns ``label, quantity, block, head, component, value, figure``
        (:func:`vitscope.api.frames.inspection_frame`)."""
        return frames.inspection_frame(self.results)

    def plot(self, name: str | None = None) -> Figure:
        """The figure written as ``name`` (default the first: ``attention_maps_1.png``, the query
        attention maps of the first image, or ``nmi_kde.png``)."""
        from vitscope.reporting.plots import png_figure

        pngs = [n for n in self.files if n.endswith(".png")]
        if name is not None and name not in pngs:
            raise VitscopeError(f"no figure '{name}'. Valid options are: {pngs}")
        if not pngs:
            raise VitscopeError("these results have no figure")
        f = self.files[name or pngs[0]]
        return f if isinstance(f, Figure) else png_figure(Path(f))

    def _write(self, out: Path) -> None:
        from vitscope.views.run import write_inspect

        write_inspect(out, self.results, self.files)

    def summary(self) -> dict[str, str]:
        data = self.results.get("data") or {}
        facts = {"model": self.label, "images": ", ".join(data.get("names", [])[:6])} if "model" in self.results else {}
        return {**facts, "files": ", ".join(self.files), **({"folder": str(self.folder)} if self.folder else {})}


class Finetune(Result):
    """A fine-tuning run (``vitscope finetune``, ``finetune.json``; its checkpoint stays where it was written)."""

    kind = FINETUNE
    file = "finetune.json"

    @property
    def label(self) -> str:
        return str(self.results.get("provenance", {}).get("model"))

    def to_frame(self) -> pd.DataFrame:
        """Columns ``model, quantity, epoch, value, figure`` (:func:`vitscope.api.frames.finetune_frame`)."""
        return frames.finetune_frame(self.results)

    def plot(self) -> Figure:
        """Training loss and validation accuracy per epoch (the command line draws no figure of these)."""
        from vitscope.eval.plots import finetune_figure
        from vitscope.reporting.plots import detached

        return detached(finetune_figure(self.results))

    def summary(self) -> dict[str, str]:
        return {"model": self.label, "accuracy": f"{self.results.get('accuracy', float('nan')):.3f}",
                **({"folder": str(self.folder)} if self.folder else {})}


class Signature(Result):
    """Where models sit between a CL and a MIM reference (``vitscope signature``, ``signature.json``)."""

    kind = SIGNATURE
    file = "signature.json"

    @property
    def label(self) -> str:
        return ", ".join(str(s.get("spec")) for s in self.results.get("signatures", []))

    @property
    def references(self) -> dict[str, str]:
        """``{"cl": spec, "mim": spec}``."""
        return {m["role"]: m["spec"] for m in self.results.get("models", []) if m.get("role") in ("cl", "mim")}

    def to_frame(self) -> pd.DataFrame:
        """Columns ``model, property, key, figure, band, block, depth, separates, quantity, value``
        (:func:`vitscope.api.frames.signature_frame`)."""
        return frames.signature_frame(self.results)

    def plot(self) -> Figure:
        """The figure ``vitscope signature`` writes to ``signature.png``."""
        from vitscope.reporting.plots import detached
        from vitscope.reporting.signature import signature_figure

        return detached(signature_figure(self.results))

    def _write(self, out: Path) -> None:
        """``signature.json``, the table as ``signature.md`` and the figure as ``signature.png``."""
        from vitscope.reporting.plots import save_figure
        from vitscope.reporting.signature import signature_figure, table_markdown

        super()._write(out)
        write_atomic(out / "signature.md", table_markdown(self.results).encode())
        save_figure(signature_figure(self.results), out / "signature.png")

    def summary(self) -> dict[str, str]:
        refs = self.references
        flags = [f"{s['spec']}: {text}" for s in self.results.get("signatures", []) for text in s["flags"].values()]
        return {"models": self.label, "CL reference": str(refs.get("cl")), "MIM reference": str(refs.get("mim")),
                **({"flags": "; ".join(flags)} if flags else {}), **({"folder": str(self.folder)} if self.folder else {})}


class Pretraining(Result):
    """A finished pretraining run (``vitscope pretrain``, ``pretrain.json``): its config, log and wall
    time; the checkpoint stays in the run folder (``vitscope.load(run.checkpoint)``)."""

    kind = PRETRAIN
    file = "pretrain.json"

    @property
    def label(self) -> str:
        return f"{self.results['config']['method']} {self.results['config']['model']}"

    @property
    def checkpoint(self) -> Path | None:
        """The run's ``checkpoint.pt`` (None for results held apart from their run folder)."""
        path = self.folder / self.results.get("checkpoint", "checkpoint.pt") if self.folder else None
        return path if path is not None and path.is_file() else None

    def to_frame(self) -> pd.DataFrame:
        """Columns ``method, model, quantity, step, epoch, value`` (:func:`vitscope.api.frames.pretrain_frame`)."""
        return frames.pretrain_frame(self.results)

    def plot(self) -> Figure:
        """The loss against epochs (and the hybrid's two parts), as ``vitscope plot RUN`` draws it."""
        from vitscope.reporting.plots import detached
        from vitscope.reporting.training import training_figure

        return detached(training_figure([(self.label, self.results["log"])]))

    def summary(self) -> dict[str, str]:
        t = self.results["training"]
        return {"run": self.label, "steps": f"{t['steps']:,}", "loss": f"{t['loss_first']:.4f} → {t['loss_last']:.4f}",
                "wall time": f"{t['wall_seconds'] / 60:.1f} min", **({"folder": str(self.folder)} if self.folder else {})}



class Trajectory(Result):
    """Properties along training: the analysis of every snapshot of a run on the same images
    (``vitscope trajectory``, ``trajectory.json``)."""

    kind = TRAJECTORY
    file = "trajectory.json"

    @property
    def label(self) -> str:
        return str(self.results.get("run") or f"{len(self.snapshots)} checkpoints")

    @property
    def snapshots(self) -> list[dict[str, Any]]:
        """One entry per snapshot, in step order: ``path``, ``step``, ``epoch``, ``metrics`` (as an analysis)."""
        return self.results["snapshots"]

    def to_frame(self) -> pd.DataFrame:
        """Columns ``step, epoch, snapshot, metric, quantity, block, head, x, value, figure``
        (:func:`vitscope.api.frames.trajectory_frame`)."""
        return frames.trajectory_frame(self.results)

    def plot(self, which: str = "curves") -> Figure:
        """``curves`` (each property's later-half mean against the step, the loss on a second axis,
        ``trajectory.png``) or ``heatmap`` (block × step, ``trajectory_heatmap.png``)."""
        from vitscope.reporting.plots import detached
        from vitscope.reporting.trajectory import heatmap_figure, trajectory_figure

        figures = {"curves": trajectory_figure, "heatmap": heatmap_figure}
        if which not in figures:
            raise VitscopeError(f"no '{which}' figure of a trajectory. Valid options are: {list(figures)}")
        return detached(figures[which](self.results))

    def save(self, out: PathLike, plots: bool = True) -> Path:
        """``trajectory.json``, ``trajectory.md`` and, with ``plots``, ``trajectory.png`` and
        ``trajectory_heatmap.png``, as ``vitscope trajectory`` writes them."""
        return self._save(out, lambda folder: self._write(folder, plots))

    def _write(self, out: Path, plots: bool = True) -> None:
        from vitscope.reporting.plots import save_figure
        from vitscope.reporting.trajectory import heatmap_figure, table_markdown, trajectory_figure

        super()._write(out)
        write_atomic(out / "trajectory.md", table_markdown(self.results).encode())
        if plots:
            save_figure(trajectory_figure(self.results), out / "trajectory.png")
            save_figure(heatmap_figure(self.results), out / "trajectory_heatmap.png")

    def summary(self) -> dict[str, str]:
        steps = [e["step"] for e in self.snapshots]
        span = f", steps {steps[0]}–{steps[-1]}" if steps else ""
        return {"run": self.label, "snapshots": f"{len(steps)}{span}",
                "data": str(self.results["settings"]["data"]), **({"folder": str(self.folder)} if self.folder else {})}


KINDS: dict[str, type[Result]] = {c.kind: c for c in (Analysis, Comparison, Probe, Robustness, Inspection, Finetune,
                                                       Signature, Pretraining, Trajectory)}
FILES = ("results.json", "probe.json", "finetune.json", "inspect.json", "signature.json", "pretrain.json",
         "trajectory.json")


def read(path: PathLike) -> Result:
    """The results in folder (or file) ``path`` as their object: an analysis or compare or robustness
    ``results.json``, ``probe.json``, ``finetune.json``, ``inspect.json``, ``signature.json``, a
    finished pretraining run's ``pretrain.json`` or a ``trajectory.json`` (a folder holding several: the
    first of these). The file is checked as the command line checks it (one line on error)."""
    return _read(path)


def _read(path: PathLike, reader: str | None = None) -> Result:
    """:func:`read`, the file also checked for what ``reader`` (see :data:`vitscope.results.READERS`) needs."""
    p = Path(path)
    if p.is_dir():
        file = next((p / f for f in FILES if (p / f).is_file()), None)
        if file is None:
            raise VitscopeError(f"{p} is not a results folder (no {', '.join(FILES)})")
    else:
        file = p
    r = read_results(file, reader=reader)
    cls = KINDS[str(kind_of(r, file))]  # read_results refuses unknown kinds
    folder = file.parent
    if cls is Probe:
        saved = folder / "probe.pt"
        state = None
        if r.get("saved_probe") and saved.is_file():
            from vitscope.models.classifier import load_probe

            state = load_probe(saved)[1]
        return Probe(r, folder, state)
    if cls is Inspection:
        names = list(r.get("files", [])) + (["nmi_kde.png"] if r.get("nmi_kde") else [])
        return Inspection(r, folder, {n: folder / n for n in names if (folder / n).is_file()})
    return cls(r, folder)


def plot(analyses: Sequence[Analysis | PathLike], metric: str | None = None,
         labels: Sequence[str] | None = None) -> Figure:
    """Several analyses overlaid in the figure of ``metric`` (attention, similarity, spectrum, fourier, norms;
    default the first all hold), as ``vitscope plot`` draws it; ``labels`` default to the model specs.

    >>> vitscope.plot([moco, simmim], "attention", labels=["MoCo v3", "SimMIM"])
    """
    from vitscope.reporting.plots import FIGURES, common_metrics, detached

    results = [as_result(a, Analysis, reader="plot") for a in analyses]
    if not results:
        raise VitscopeError("nothing to plot: give at least one analysis")
    if labels is not None and len(labels) != len(results):
        raise VitscopeError(f"{len(labels)} labels for {len(results)} analyses")
    runs = [(lab, r.results["metrics"]) for lab, r in zip(labels or [r.label for r in results], results)]
    common = common_metrics(runs)
    if metric is not None and metric not in common:
        raise VitscopeError(f"no '{metric}' metric in every analysis. Valid options are: {common}")
    if not common:
        raise VitscopeError(f"the analyses share no metric of {list(FIGURES)}")
    return detached(FIGURES[metric or common[0]](runs))


def as_result(x: Result | PathLike, cls: type[Result] | None = None, reader: str | None = None) -> Result:
    """``x`` itself, or the results at path ``x`` (:func:`read`); with ``cls``, they must be of that
    kind, with ``reader`` hold what that reader of :data:`vitscope.results.READERS` indexes."""
    if isinstance(x, Result):
        missing = missing_keys(x.results, READERS[reader].get(x.kind)) if reader else []
        if missing:
            raise VitscopeError(f"the {type(x).__name__} of {x.label} lacks {', '.join(missing[:5])}")
        r = x
    else:
        r = _read(x, reader)
    if cls is not None and not isinstance(r, cls):
        raise VitscopeError(f"{x} holds {type(r).__name__} results, not {cls.__name__} results")
    return r
