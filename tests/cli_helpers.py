"""Running the ``vitscope`` CLI in-process from a test."""

import sys

import pytest

from vitscope.cli import main


def run_cli(monkeypatch, capsys, *args):
    """``vitscope ARGS...`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["vitscope", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def without(obj, keys):
    """``obj`` (parsed JSON) without the dict entries named in ``keys``, at any depth: what two runs of
    the same work share once the wall time, the clock and such are left out."""
    if isinstance(obj, dict):
        return {k: without(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [without(v, keys) for v in obj]
    return obj
