"""The ``vitscope`` command line.

Each sub-command lives in ``vitscope/commands/<name>.py`` and exposes
``register(app)``; this module only assembles them and, once for all of them, turns bad input
(:class:`VitscopeError`, usage errors) into one line on stderr and exit code 2, and Ctrl-C
into one line and exit code 130, never a traceback. SIGTERM and SIGUSR1 (a scheduler's
pre-emption) stop a resumable run after its next step with a checkpoint and a line saying how
to resume (:class:`Stopped`), and end any other run as Ctrl-C does; exit code 128 + signal.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

import typer

from vitscope.allocator import retain_freed_memory
from vitscope.errors import Stopped, VitscopeError
from vitscope.stopping import STOP_SIGNALS, defer_stop

COMMANDS = ("analyze", "inspect", "compare", "pretrain", "probe", "finetune", "robustness", "plot", "report", "zoo",
            "demo", "signature", "trajectory")

app = typer.Typer(
    name="vitscope",
    help="What has this Vision Transformer learned? Analyses after Park et al. (ICLR 2023) and Shekhar et al.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for _name in COMMANDS:
    importlib.import_module(f"vitscope.commands.{_name}").register(app)


# click's base of usage errors (bad option value, unknown option, missing option), found through
# typer's public BadParameter: typer ≥ 0.20 vendors click, older typer uses click itself.
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
# errors of the machine, not of vitscope: one line too (an atomic writer has removed its temp file)
_ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class Interrupted(BaseException):
    """Ctrl-C (or a stop signal outside a resumable loop) in the main process: a ``BaseException``
    that click does not turn into ``Abort``."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt_handler(main_pid: int) -> Callable[[int, object], None]:
    """A SIGINT handler raising :class:`Interrupted` in ``main_pid`` and ``KeyboardInterrupt`` (the
    default) in forked children such as DataLoader workers, which end quietly on it."""
    def handler(signum: int, frame: object) -> None:
        raise Interrupted if os.getpid() == main_pid else KeyboardInterrupt
    return handler


def _stop_handler(main_pid: int) -> Callable[[int, object], None]:
    """A SIGTERM / SIGUSR1 handler: recorded for a resumable loop running in ``main_pid``
    (:func:`vitscope.stopping.deferred_stop`), else :class:`Interrupted`; ignored in forked children
    (DataLoader workers), which their parent ends."""
    def handler(signum: int, frame: object) -> None:
        if os.getpid() == main_pid and not defer_stop(signum):
            raise Interrupted(signum)
    return handler


def _interruption(e: BaseException | None) -> int | None:
    """The signal of the Ctrl-C / stop that ``e`` is, or was raised while handling, else None. A
    library's clean-up can raise its own error while an interruption unwinds it (torch.save's zip
    writer: ``RuntimeError: ... unexpected pos``); the interruption is still what ended the run."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, (Interrupted, KeyboardInterrupt)):
            return getattr(e, "signum", signal.SIGINT)
        seen.add(id(e))
        e = e.__context__
    return None


def _interrupted(signum: int) -> tuple[str, int]:
    """The line and exit code (128 + signal) of a run ended by signal ``signum``."""
    by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
    return f"interrupted{by}", 128 + signum


def _run(argv: list[str] | None) -> tuple[str, int] | int:
    """Run the app; return its exit code, or ``(one-line message, exit code)`` for a failure."""
    try:
        code = app(args=argv, standalone_mode=False)
    except VitscopeError as e:
        return f"error: {e}", 2
    except _USAGE_ERROR as e:
        if not e.format_message():  # `vitscope` alone: the help text
            e.show()
            return e.exit_code
        where = getattr(getattr(e, "ctx", None), "command_path", "vitscope")
        return f"error: {e.format_message()} (see '{where} --help')", e.exit_code
    except OSError as e:
        if e.errno not in _ENVIRONMENT_ERRNOS:
            raise
        return f"error: {e.strerror}" + (f": '{e.filename}'" if e.filename else ""), 2
    except Stopped as e:
        return str(e), 128 + e.signum
    except BaseException as e:  # an interruption, however a library reported it
        signum = _interruption(e)
        if signum is None:
            raise
        return _interrupted(signum)
    if code == 130:  # typer's own translation of a KeyboardInterrupt
        return "interrupted", 130
    return code or 0


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and exit.

    Bad input (:class:`VitscopeError`, a usage error, a full disk or unwritable path) is one line on
    stderr and exit code 2; Ctrl-C is ``vitscope: interrupted`` and exit code 130; SIGTERM / SIGUSR1
    are ``vitscope: interrupted by SIGTERM`` (143 / 138), or a :class:`Stopped` run's line. Never a
    traceback.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    retain_freed_memory()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupt_handler(os.getpid()))
        for signum in STOP_SIGNALS:
            signal.signal(signum, _stop_handler(os.getpid()))
    outcome = _run(argv)
    if isinstance(outcome, int):
        sys.exit(outcome)
    message, code = outcome
    print(f"vitscope: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)
