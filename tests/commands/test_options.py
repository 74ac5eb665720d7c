"""The common options: one definition, on every command that runs a model; one line per command in `vitscope --help`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from vitscope.cli import COMMANDS, app
from vitscope.commands import options

SRC = Path(__file__).resolve().parents[2] / "src"
#: Commands that run a model, and whether they have a choice of autocast precision.
RUN_A_MODEL = {"analyze": True, "inspect": True, "compare": True, "pretrain": True, "probe": False,
               "finetune": False, "robustness": False}


def params(command: str) -> dict[str, object]:
    """``{option: click parameter}`` of one command, secondary names (``--no-progress``) included."""
    group = typer.main.get_command(app)
    return {o: p for p in group.commands[command].params for o in (*p.opts, *p.secondary_opts)}


@pytest.mark.parametrize("command", sorted(RUN_A_MODEL))
def test_every_command_that_runs_a_model_takes_the_common_options(command):
    got = params(command)
    shared = {"--device": options.DEVICE, "--batch-size": options.BATCH_SIZE, "--no-progress": options.PROGRESS,
              "--seed": options.SEED, **({"--precision": options.PRECISION} if RUN_A_MODEL[command] else {})}
    for name, option in shared.items():
        assert name in got, f"{command} lacks {name}"
        assert got[name].help == option.help, f"{command} {name} is not the shared definition"


def test_help_gives_each_command_one_line():
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "80"}
    text = subprocess.run([sys.executable, "-m", "vitscope", "--help"], env=env, capture_output=True, text=True,
                          timeout=120).stdout
    rows = [ln.strip("│ ").rstrip() for ln in text.splitlines() if ln.startswith("│")]
    names = [r.split()[0] if r.split() and r.split()[0] in COMMANDS else None for r in rows]
    assert sorted(n for n in names if n) == sorted(COMMANDS)
    longer = [names[i] for i in range(len(rows) - 1) if names[i] and names[i + 1] is None and rows[i + 1]]
    assert longer == [], f"entries longer than one line: {longer}"
