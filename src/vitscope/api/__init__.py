"""vitscope's Python API: one function per command, result objects that are tables and figures.

The public names are re-exported by :mod:`vitscope` (``vitscope.analyze(...)``); docs/api.md shows
each with an example. Modules: :mod:`~vitscope.api.models` (``load``, ``zoo``),
:mod:`~vitscope.api.analyze`, :mod:`~vitscope.api.compare`, :mod:`~vitscope.api.probe`,
:mod:`~vitscope.api.finetune`, :mod:`~vitscope.api.pretrain`,
:mod:`~vitscope.api.inspect` (``inspect``, ``capture``), :mod:`~vitscope.api.robustness`,
:mod:`~vitscope.api.signature`,
:mod:`~vitscope.api.report` (``report``, ``findings``), :mod:`~vitscope.api.results` (the result
classes, ``read``, ``plot``), :mod:`~vitscope.api.frames` (results as tables) and
:mod:`~vitscope.api.inputs` (what the functions accept).
"""

from vitscope.api.analyze import analyze
from vitscope.api.compare import compare
from vitscope.api.finetune import finetune
from vitscope.api.inspect import capture, inspect
from vitscope.api.models import load, zoo
from vitscope.api.pretrain import pretrain
from vitscope.api.probe import probe
from vitscope.api.report import findings, report
from vitscope.api.results import (
           Analysis,
           Comparison,
           Finetune,
           Inspection,
           Pretraining,
           Probe,
           Result,
           Robustness,
           Signature,
           plot,
           read,
)
from vitscope.api.robustness import robustness
from vitscope.api.signature import signature

__all__ = ["Analysis", "Comparison", "Finetune", "Inspection", "Pretraining", "Probe", "Result", "Robustness",
           "Signature", "analyze", "capture", "compare", "findings", "finetune", "inspect", "load", "plot", "pretrain",
           "probe", "read", "report", "robustness", "signature", "zoo"]
