"""Errors that the command line reports as one line, without a traceback."""


class VitscopeError(ValueError):
    """A problem with the user's input (spec, data, checkpoint, option): say what and stop.

    A ``ValueError``, so library callers can catch bad values the usual way.
    """
