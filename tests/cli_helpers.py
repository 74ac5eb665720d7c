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
