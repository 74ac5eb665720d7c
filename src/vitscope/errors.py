"""Errors that the command line reports as one line, without a traceback."""


class Stopped(Exception):
    """A run that a signal (SIGTERM, SIGUSR1: a scheduler's pre-emption) stopped after saving what it
    needs to continue; the message says how. The command line exits with ``128 + signum``."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


class VitscopeError(ValueError):
    """A problem with the user's input (spec, data, checkpoint, option): say what and stop.

    A ``ValueError``, so library callers can catch bad values the usual way.
    """
