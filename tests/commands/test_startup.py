"""The command line answers --help and usage errors without importing torch or timm (vitscope.choices)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vitscope.cli import COMMANDS

SRC = Path(__file__).resolve().parents[2] / "src"
HEAVY = ("torch", "timm", "torchvision", "numpy", "matplotlib", "PIL", "scipy", "safetensors")
# Run the command line in this interpreter, then print which heavy packages it imported.
PROBE = (f"import sys\nfrom vitscope.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
         f"    code = e.code\nprint('EXIT', code, sorted(m for m in {HEAVY} if m in sys.modules))\n")


def run_cli(*argv: str) -> tuple[int, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], env=env, capture_output=True, text=True,
                         timeout=120, check=False).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("EXIT "))
    code, imported = line[5:].split(" ", 1)
    return int(code), ast.literal_eval(imported)


@pytest.mark.parametrize("argv", [("--help",), *((c, "--help") for c in COMMANDS), ("zoo", "add", "--help"),
                                  ("probe", "--bogus"), ("compare", "--model")])
def test_help_and_usage_errors_import_no_heavy_package(argv):
    code, imported = run_cli(*argv)
    assert code == (0 if "--help" in argv else 2)
    assert imported == [], f"vitscope {' '.join(argv)} imported {imported}"


def test_zoo_listing_imports_no_heavy_package():
    """`vitscope zoo` reads the manifest with the standard library (vitscope.zoo_manifest): it lists the
    models in well under a second instead of the seconds an import of torch takes."""
    code, imported = run_cli("zoo")
    assert code == 0 and imported == [], imported
