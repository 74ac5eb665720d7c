"""Render examples/quickstart.ipynb with its outputs into docs/quickstart.ipynb.

    python scripts/render_quickstart.py

The example stays stored without outputs (tests/api/test_api_notebook.py runs it); the rendered copy
is what readers see on the web. Run this after a change to the notebook or to the zoo. tqdm's
warning that the kernel lacks ipywidgets (it names this machine's install path) is left out.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": tmp}}).execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not _tqdm_warning(o)]
    nbformat.write(nb, ROOT / "docs" / "quickstart.ipynb")
    print(ROOT / "docs" / "quickstart.ipynb")


def _tqdm_warning(output: dict) -> bool:
    return output.get("output_type") == "stream" and "TqdmWarning" in output.get("text", "")


if __name__ == "__main__":
    main()
