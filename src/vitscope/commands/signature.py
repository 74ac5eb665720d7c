"""``vitscope signature``: where a model sits between contrastive (CL) and masked image modelling (MIM).

Gathers results folders and hands them to :mod:`vitscope.report.signature` (the math); with no
``--reference`` it first analyses the zoo's MoCo v3 (CL) and SimMIM (MIM) models on the CIFAR-10
test images that ship with the package (``vitscope demo``'s 500-image bank), for 32-px models only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vitscope.errors import VitscopeError

DEFAULT_REFERENCES = {"cl": "zoo:moco-cifar10", "mim": "zoo:simmim-cifar10"}
DEFAULT_INPUT_SIZE = (3, 32, 32)


def check_small_images(folders: list[Path]) -> None:
    """The default references are 32-px models: every model in ``folders`` needs an analysis at
    3×32×32, else a :class:`VitscopeError` (no silent comparison across input sizes)."""
    from vitscope.report.signature import ModelResults, input_size, pixels, read_folder

    analysed = {spec: input_size(ModelResults(spec, analysis=r))
                for f in folders for spec, kind, r in read_folder(f)[0] if kind == "analysis"}
    wrong = {s: size for s, size in analysed.items() if size != DEFAULT_INPUT_SIZE}
    if not analysed or wrong:
        got = ", ".join(f"{s} at {pixels(v)}" for s, v in wrong.items())
        raise VitscopeError(
            "without --reference the references are the zoo's 32-px CIFAR-10 models "
            f"({', '.join(DEFAULT_REFERENCES.values())}), for 32-px models only; "
            + (f"analysed {got}" if got else "no `vitscope analyze` results among the folders given")
            + ": give --reference RESULTS=cl and --reference RESULTS=mim analysed at the model's input size")


def default_references(out: Path, device: str, progress: bool) -> dict[Path, str]:
    """Analyse the zoo's CL and MIM models on the shipped CIFAR-10 images into ``out/reference-*``."""
    from vitscope.api import analyze
    from vitscope.commands.demo import BANK

    refs = {}
    for family, spec in DEFAULT_REFERENCES.items():
        folder = out / f"reference-{spec.removeprefix('zoo:')}"
        analyze(spec, str(BANK), out=folder, batch_size=100, device=device, workers=0, progress=progress)
        refs[folder] = family
    return refs


def run_signature(folders: list[Path], references: list[str], out: Path, *, device: str = "auto",
                  progress: bool = True) -> dict[str, Any]:
    """Write ``out/signature.json``, ``signature.png`` and ``signature.md``; return the signature."""
    from vitscope.report.signature import gather, parse_references, plot_signature, signatures, table_markdown
    from vitscope.results import check_output_folder, ensure_dir, write_atomic, write_json

    check_output_folder(out)
    for f in folders:
        if not f.is_dir():
            raise VitscopeError(f"'{f}' is not a results folder")
    refs = parse_references(references)
    if not refs:
        check_small_images(folders)
        refs = default_references(out, device, progress)
    result = signatures(*gather(folders, refs))
    ensure_dir(out)
    write_json(out / "signature.json", result)
    write_atomic(out / "signature.md", table_markdown(result).encode())
    plot_signature(result, out / "signature.png")
    return result


def register(app: typer.Typer) -> None:
    @app.command("signature", help="Where a model sits between CL and MIM, per property and depth.\n\n"
                                   "Where a model sits between contrastive (CL) and masked image modelling "
                                   "(MIM), per property and depth: s = (x - x_MIM) / (x_CL - x_MIM). RESULTS: "
                                   "analyze, probe, robustness or compare folders of the model(s) under study.")
    def _cmd(
        results: Annotated[list[Path], typer.Argument(help="results folders of the model(s) under study")],
        out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
        reference: Annotated[list[str] | None, typer.Option(
            help="RESULTS=cl or RESULTS=mim (repeatable, both needed); default: the zoo's MoCo v3 and SimMIM "
                 "analysed on the shipped CIFAR-10 images (32-px models only)")] = None,
        device: Annotated[str, typer.Option(help="auto, cpu, cuda, ... (for the default references)")] = "auto",
        progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    ) -> None:
        from vitscope.report.signature import table_text

        result = run_signature(results, reference or [], out, device=device, progress=progress)
        typer.echo(table_text(result))
        typer.echo(f"-> {out / 'signature.json'}, {out / 'signature.png'}, {out / 'signature.md'}")
