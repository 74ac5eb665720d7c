"""The ``vitscope`` command line.

Each sub-command lives in ``vitscope/commands/<name>.py`` and exposes
``register(app)``; this module only assembles them and turns :class:`VitscopeError`
(bad input) into one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from vitscope.errors import VitscopeError

COMMANDS = ("analyze", "compare", "pretrain", "probe", "finetune", "robustness", "plot", "report", "demo",
            "inspect")

app = typer.Typer(
    name="vitscope",
    help="What has this Vision Transformer learned? Analyses after Park et al. (ICLR 2023) and Shekhar et al.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for _name in COMMANDS:
    importlib.import_module(f"vitscope.commands.{_name}").register(app)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except VitscopeError as e:
        print(f"vitscope: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("vitscope: interrupted", file=sys.stderr)
        sys.exit(130)
