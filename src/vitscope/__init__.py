"""vitscope: what has this Vision Transformer learned?

The Python API (docs/api.md), one function per command, results as tables and figures::

    import vitscope
    a = vitscope.analyze("zoo:moco-cifar10", images)   # images: uint8 [N, H, W, C], a folder, a Dataset, ...
    a.to_frame()                                        # one row per block × quantity (× head)
    a.plot("attention")                                 # the figure `vitscope analyze` writes

This file only re-exports. The API names are imported from :mod:`vitscope.api` on first use
(PEP 562), so ``import vitscope`` stays free of torch, pandas and matplotlib. No API name is also
the name of a subpackage or module (the engines are named for what they hold: ``comparison``,
``views``, ``perturbation``, ``reporting``, ``taps``), so ``import vitscope.<package>.<module> as m``
works everywhere; docs/architecture.md draws the floors.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vitscope.errors import VitscopeError
from vitscope.version import __version__

#: Public name → the module of :mod:`vitscope.api` that defines it.
_API = {
    "load": "models", "zoo": "models", "analyze": "analysis", "compare": "comparison", "probe": "probing",
    "finetune": "finetuning", "inspect": "views", "capture": "views", "robustness": "perturbation",
    "report": "reporting", "findings": "reporting", "plot": "results", "read": "results", "Result": "result",
    "Analysis": "results", "Comparison": "results", "Probe": "results", "Robustness": "results",
    "Inspection": "results", "Finetune": "results", "signature": "placement", "Signature": "results",
    "pretrain": "pretraining", "Pretraining": "results", "trajectory": "snapshots", "Trajectory": "results",
}

__all__ = [
    "Analysis", "Comparison", "Finetune", "Inspection", "Pretraining", "Probe", "Result", "Robustness", "Signature",
    "Trajectory", "VitscopeError", "__version__", "analyze", "capture", "compare", "findings", "finetune", "inspect",
    "load", "plot", "pretrain", "probe", "read", "report", "robustness", "signature", "trajectory", "zoo",
]

if TYPE_CHECKING:
    from vitscope.api import (
        Analysis,
        Comparison,
        Finetune,
        Inspection,
        Pretraining,
        Probe,
        Result,
        Robustness,
        Signature,
        Trajectory,
        analyze,
        capture,
        compare,
        findings,
        finetune,
        inspect,
        load,
        plot,
        pretrain,
        probe,
        read,
        report,
        robustness,
        signature,
        trajectory,
        zoo,
    )


def __getattr__(name: str) -> Any:
    """Import an API name from its module of :mod:`vitscope.api` on first use, then keep it here."""
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'vitscope' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"vitscope.api.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
