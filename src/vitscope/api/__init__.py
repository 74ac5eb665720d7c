"""vitscope's Python API: one function per command, result objects that are tables and figures.

The public names are re-exported by :mod:`vitscope` (``vitscope.analyze(...)``); docs/api.md shows
each with an example. Modules: :mod:`~vitscope.api.models` (``load``, ``zoo``),
:mod:`~vitscope.api.analysis`, :mod:`~vitscope.api.comparison`, :mod:`~vitscope.api.probing`,
:mod:`~vitscope.api.finetuning`, :mod:`~vitscope.api.pretraining`,
:mod:`~vitscope.api.views` (``inspect``, ``capture``), :mod:`~vitscope.api.perturbation`,
:mod:`~vitscope.api.placement`, :mod:`~vitscope.api.snapshots` (``trajectory``),
:mod:`~vitscope.api.reporting` (``report``, ``findings``), :mod:`~vitscope.api.result` (the base
``Result``), :mod:`~vitscope.api.results` (the result classes, ``read``, ``plot``),
:mod:`~vitscope.api.frames` (results as tables) and
:mod:`~vitscope.api.inputs` (what the functions accept).
"""

from vitscope.api.analysis import analyze
from vitscope.api.comparison import compare
from vitscope.api.finetuning import finetune
from vitscope.api.models import load, zoo
from vitscope.api.perturbation import robustness
from vitscope.api.placement import signature
from vitscope.api.pretraining import pretrain
from vitscope.api.probing import probe
from vitscope.api.reporting import findings, report
from vitscope.api.result import Result
from vitscope.api.results import (
    Analysis,
    Comparison,
    Finetune,
    Inspection,
    Pretraining,
    Probe,
    Robustness,
    Signature,
    Trajectory,
    plot,
    read,
)
from vitscope.api.snapshots import trajectory
from vitscope.api.views import capture, inspect

__all__ = ["Analysis", "Comparison", "Finetune", "Inspection", "Pretraining", "Probe", "Result", "Robustness",
           "Signature", "Trajectory", "analyze", "capture", "compare", "findings", "finetune", "inspect", "load", "plot",
           "pretrain", "probe", "read", "report", "robustness", "signature", "trajectory", "zoo"]
