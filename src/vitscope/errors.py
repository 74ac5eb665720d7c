"""Errors that the command line reports as one line, without a traceback."""


class VitscopeError(Exception):
    """A problem with the user's input (spec, data, checkpoint, option): say what and stop."""
