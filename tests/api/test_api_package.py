"""The public names: cheap to import, resolved lazily, and one keyword argument per command-line option."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import vitscope

# API parameter -> the command's option of it (None: the command spells it differently, e.g. a string to parse)
ALIASES = {
    "compare": {"model_a": "model", "model_b": "model", "probes": "probe", "layer_types": "layer_type"},
    "probe": {"train": "train_data", "val": "val_data"},
    "inspect": {"data": "image", "labels": "label"},
    "robustness": {"models": "model", "probes": "probe", "frequencies": None},
    "report": {"results": "folders", "families": "family"},
    "signature": {"cl": None, "mim": None},  # --reference RESULTS=cl|mim
}


def test_import_is_cheap_and_names_resolve_on_use():
    code = "import sys, vitscope; heavy = [m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules]; assert not heavy, heavy"
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in vitscope.__all__:
        assert getattr(vitscope, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        getattr(vitscope, "nosuch")  # noqa: B009
    assert set(vitscope.__all__) == {*vitscope._API, "VitscopeError", "__version__"}


def test_names_shared_with_subpackages_stay_the_functions():
    for module in ("vitscope.comparison.run", "vitscope.views.run", "vitscope.reporting.html", "vitscope.perturbation.run",
                   "vitscope.taps"):
        importlib.import_module(module)  # imported after vitscope, they would set vitscope.<name> to themselves
    for name in ("compare", "inspect", "report", "robustness", "capture"):
        value = getattr(vitscope, name)
        assert inspect.isfunction(value) and value.__module__.startswith("vitscope.api"), name


def _normal(value):
    if value is None or value == () or value == []:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return str(value) if isinstance(value, Path) else value


@pytest.mark.parametrize("command", ["analyze", "compare", "probe", "inspect", "robustness", "report", "signature"])
def test_every_option_is_a_keyword_argument_with_the_same_default(command):
    from vitscope.cli import app

    options = {p.name: p for p in typer.main.get_command(app).commands[command].params}
    params = inspect.signature(getattr(vitscope, command)).parameters
    aliases = ALIASES.get(command, {})
    covered = set()
    for name, param in params.items():
        option = aliases.get(name, name)
        if option is None or option not in options:
            continue
        covered.add(option)
        if param.default is not inspect.Parameter.empty and not options[option].required:
            assert _normal(options[option].default) == _normal(param.default), (command, name)
        assert param.annotation is not inspect.Parameter.empty, (command, name)
    # inspect: --data or --image; signature: the references as strings
    cli_only = {"inspect": {"data"}, "robustness": {"frequencies"}, "signature": {"reference"}}.get(command, set())
    assert set(options) - covered - cli_only == set(), command
