"""Result objects: a results file in memory, as a table, as the figures the command line draws.

Every object holds the content of one results file (``.results``, a dict of plain JSON values,
exactly what the file holds) and the folder it was saved to or read from (``.folder``):

- ``.to_frame()`` a tidy :class:`pandas.DataFrame` (:mod:`vitscope.api.frames`);
- ``.plot(...)`` the matplotlib ``Figure`` the command line writes as a PNG;
- ``.save(dir)`` the files the command line writes (:mod:`vitscope.results` writes them);
- :func:`read` loads any results folder (or file) back into the same kind of object.

In a notebook an object shows itself as a short table of what it holds (``_repr_html_``).
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from matplotlib.figure import Figure

from vitscope.results import SCHEMA_VERSION, ensure_dir, to_plain, write_results

PathLike = str | os.PathLike


class Result:
    """The content of one results file (``results``) and where it is on disk (``folder``, or None)."""

    kind: ClassVar[str]
    file: ClassVar[str] = "results.json"

    def __init__(self, results: Mapping[str, Any], folder: PathLike | None = None) -> None:
        self.results: dict[str, Any] = to_plain({"schema_version": SCHEMA_VERSION, **results})
        self.folder = Path(folder) if folder is not None else None

    @property
    def label(self) -> str:
        """The model(s) the results are of, for legends and tables."""
        return str(self.results.get("model", {}).get("spec"))

    def to_frame(self) -> pd.DataFrame:
        """The numbers as a tidy table (:mod:`vitscope.api.frames`)."""
        raise NotImplementedError

    def plot(self) -> Figure:
        """The figure the command line draws of these results."""
        raise NotImplementedError

    def save(self, out: PathLike) -> Path:
        """Write the files the command line writes into folder ``out`` (created if needed); return it."""
        return self._save(out, self._write)

    def _save(self, out: PathLike, write: Callable[[Path], None]) -> Path:
        folder = ensure_dir(Path(out))
        write(folder)
        self.folder = folder
        return folder

    def _write(self, out: Path) -> None:
        """Write the files into the existing folder ``out`` (``self`` unchanged)."""
        write_results(out / self.file, self.results)

    def summary(self) -> dict[str, str]:
        """A few facts about the results, by name (the notebook view)."""
        facts = {"model": self.label}
        data = self.results.get("data")
        if isinstance(data, dict):
            facts["data"] = f"{data.get('spec')} ({data.get('images')} images)"
        if self.folder is not None:
            facts["folder"] = str(self.folder)
        return facts

    def __repr__(self) -> str:
        return f"<{type(self).__name__} " + ", ".join(f"{k}: {v}" for k, v in self.summary().items()) + ">"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                       f"{html.escape(v)}</td></tr>" for k, v in self.summary().items())
        return f"<b>vitscope {type(self).__name__}</b><table>{rows}</table>"
