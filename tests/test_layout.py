"""The house: every module imports by its full name, and no API name is also a module's name."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import types

import pytest

import vitscope


def _modules() -> list[str]:
    """Every module and package of vitscope, by its full name (the package's face included), but
    ``vitscope.__main__``, which runs the command line when imported."""
    found = (m.name for m in pkgutil.walk_packages(vitscope.__path__, "vitscope."))
    return ["vitscope", *(name for name in found if name != "vitscope.__main__")]


def test_no_api_name_is_a_subpackage_or_module():
    children = {m.name for m in pkgutil.iter_modules(vitscope.__path__)}
    assert not set(vitscope.__all__) & children
    # nor a folder, which would import as a namespace package (the zoo's files are in zoo_models/)
    assert [name for name in vitscope.__all__ if importlib.util.find_spec(f"vitscope.{name}")] == []
    assert not hasattr(vitscope, "_Package") and type(vitscope) is types.ModuleType


@pytest.mark.parametrize("name", _modules())
def test_every_module_imports_as_itself(name):
    """``import vitscope.<package>.<module> as m`` gives the module, not a name that a package's
    ``__init__`` re-exports under the module's own name."""
    namespace: dict[str, object] = {}
    exec(f"import {name} as m", namespace)  # noqa: S102 -- the statement under test, spelled as users spell it
    assert isinstance(namespace["m"], types.ModuleType) and namespace["m"].__name__ == name
    assert importlib.import_module(name) is namespace["m"]


def test_api_names_stay_functions_after_every_module_is_imported():
    for name in _modules():
        importlib.import_module(name)
    for name in vitscope.__all__:
        assert not isinstance(getattr(vitscope, name), types.ModuleType), name
