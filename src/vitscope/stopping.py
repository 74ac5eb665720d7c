"""Stop signals: a scheduler's pre-emption (SIGTERM, SIGUSR1) ends a resumable loop at a step boundary.

A loop that can resume runs inside :func:`deferred_stop`, which records the signal instead of
ending the run; the loop saves a checkpoint at its next step boundary and raises
:class:`~vitscope.errors.Stopped`. Standard library only: the command line installs its handlers
(:func:`defer_stop`) before torch is imported.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator

#: Signals a scheduler sends before it kills a job (SLURM: SIGUSR1 ahead of time with --signal, then SIGTERM).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_stop: dict[str, int] = {"deferring": 0, "signal": 0}


@contextlib.contextmanager
def deferred_stop() -> Iterator[Callable[[], int]]:
    """Within: a stop signal (:data:`STOP_SIGNALS`) is recorded instead of ending the run; yields a
    function giving that signal's number (0 while none came). A resumable loop calls it at step
    boundaries, saves a checkpoint and raises :class:`~vitscope.errors.Stopped`. Outside, the
    command line's handler ends the run at once (nothing partial is written)."""
    _stop["deferring"] += 1
    try:
        yield lambda: _stop["signal"]
    finally:
        _stop["deferring"] -= 1
        if not _stop["deferring"]:
            _stop["signal"] = 0


def ignore_stop_signals(worker_id: int = 0) -> None:
    """A DataLoader ``worker_init_fn``: the worker ignores stop signals, which a scheduler sends to
    the whole job (torch's own SIGTERM handler would end the worker and its parent would report it
    dead); the main process decides what to do and ends its workers itself."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def defer_stop(signum: int) -> bool:
    """Record stop signal ``signum`` for the running :func:`deferred_stop` block; False when none runs."""
    if _stop["deferring"]:
        _stop["signal"] = _stop["signal"] or signum
    return bool(_stop["deferring"])
