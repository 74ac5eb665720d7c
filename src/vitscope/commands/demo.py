"""``vitscope demo``: the papers' findings on vitscope's own trained models, offline, in about a minute.

Chains the real commands on what ships with the package: the zoo's MoCo v3 (CL) and
SimMIM (MIM) encoders (:mod:`vitscope.models.zoo`) and 700 CIFAR-10 test images
(``vitscope/data/demo``: a 500-image k-NN memory bank and 200 query images, disjoint).

1. ``analyze`` each model on the 200 query images (attention, similarity, spectrum, Fourier);
2. ``probe --no-linear``: 20-NN accuracy of every block, bank → queries;
3. ``compare``: minibatch CKA of every layer pair and layer type;
4. ``plot`` the two analyses overlaid, ``report`` everything with the findings table
   (families moco = cl, simmim = mim), and print the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

MODELS = {"moco": "zoo:moco-cifar10", "simmim": "zoo:simmim-cifar10"}
FAMILIES = {"moco": "cl", "simmim": "mim"}


def run_demo(out: Path, *, device: str = "auto", progress: bool = False) -> tuple[Path, str]:
    """Run the demo into ``out``; return the report path and the findings as text."""
    from vitscope.api import analyze, compare, probe
    from vitscope.data.shipped import BANK, QUERY
    from vitscope.reporting.findings import check_claims, findings_text, gather
    from vitscope.reporting.html import build_report
    from vitscope.reporting.plots import plot_all

    folders, runs = [], []
    for name, spec in MODELS.items():
        res = analyze(spec, str(QUERY), out=out / f"analyze-{name}", batch_size=100, device=device, workers=0,
                      progress=progress)
        runs.append((f"{name} ({spec})", res.metrics))
        probe(spec, str(BANK), str(QUERY), out=out / f"knn-{name}", linear=False, batch_size=128, device=device,
              cache_features=False, workers=0, progress=progress)
        folders += [out / f"analyze-{name}", out / f"knn-{name}"]
    compare(MODELS["moco"], MODELS["simmim"], str(QUERY), out=out / "cka", images=None, batch_size=50, device=device,
            workers=0, progress=progress)
    plot_all(runs, out / "overlay")
    folders = [out / "overlay", *folders, out / "cka"]
    report = build_report(folders, out / "report.html", title="vitscope demo: MoCo v3 vs SimMIM (zoo models, "
                                                             "CIFAR-10 test images)", families=FAMILIES)
    return report, findings_text(check_claims(gather(folders, FAMILIES)), only_measured=True)


def register(app: typer.Typer) -> None:
    @app.command("demo", help="The papers' findings on the shipped models, offline.\n\n"
                              "The papers' findings on the shipped MoCo v3 and SimMIM models and 700 shipped "
                              "CIFAR-10 test images: analyse, 20-NN, CKA, report (offline).")
    def _cmd(
        out: Annotated[Path, typer.Option("--out", "-o", help="output folder")] = Path("out/demo"),
        device: Annotated[str, typer.Option(help="auto, cpu, cuda, ...")] = "auto",
    ) -> None:
        import time

        from vitscope.models.zoo import entry
        from vitscope.zoo_manifest import describe

        t0 = time.perf_counter()
        for spec in MODELS.values():
            typer.echo(describe(spec.removeprefix("zoo:"), entry(spec.removeprefix("zoo:"))))
        report, text = run_demo(out, device=device)
        typer.echo("\nThe papers' claims on these two models (✓ holds, ✗ does not hold):")
        typer.echo(text)
        typer.echo(f"\n{time.perf_counter() - t0:.0f} s. Report: {report}  (figures and results.json under {out})")
