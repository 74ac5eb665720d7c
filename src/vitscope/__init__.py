"""vitscope: what has this Vision Transformer learned?

The Python API (docs/api.md), one function per command, results as tables and figures::

    import vitscope
    a = vitscope.analyze("zoo:moco-cifar10", images)   # images: uint8 [N, H, W, C], a folder, a Dataset, ...
    a.to_frame()                                        # one row per block × quantity (× head)
    a.plot("attention")                                 # the figure `vitscope analyze` writes

``load``, ``zoo``, ``analyze``, ``compare``, ``probe``, ``finetune``, ``pretrain``, ``inspect``, ``capture``,
``robustness``, ``signature``, ``report``, ``findings``, ``plot``, ``read`` and the result classes are imported on first use
(:mod:`vitscope.api`), so ``import vitscope`` stays cheap; everything else stays importable from
its module but is not promised.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from vitscope.errors import VitscopeError

__version__ = "0.1.0"


class _Package(types.ModuleType):
    """The ``vitscope`` module's type. Some API functions share their name with a subpackage or module
    (``compare``, ``inspect``, ``report``, ``robustness``, ``capture``): importing one of those would set
    ``vitscope.<name>`` to it; here that attribute is not set, so the name stays the function's. The
    modules stay importable by their full names (``from vitscope.compare.run import run_compare``),
    not as ``import vitscope.compare.run as m``."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name in _API and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

#: Public name → the module of :mod:`vitscope.api` that defines it.
_API = {
    "load": "models", "zoo": "models", "analyze": "analyze", "compare": "compare", "probe": "probe",
    "finetune": "finetune", "inspect": "inspect", "capture": "inspect", "robustness": "robustness", "report": "report",
    "findings": "report", "plot": "results", "read": "results", "Result": "results", "Analysis": "results",
    "Comparison": "results", "Probe": "results", "Robustness": "results", "Inspection": "results",
    "Finetune": "results", "signature": "signature", "Signature": "results", "pretrain": "pretrain",
    "Pretraining": "results",
}

__all__ = [
    "Analysis", "Comparison", "Finetune", "Inspection", "Pretraining", "Probe", "Result", "Robustness", "Signature",
    "VitscopeError", "__version__", "analyze", "capture", "compare", "findings", "finetune", "inspect", "load", "plot",
    "pretrain", "probe", "read", "report", "robustness", "signature", "zoo",
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
        zoo,
    )


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'vitscope' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"vitscope.api.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
