"""``vitscope.signature``: where a model sits between contrastive (CL) and masked image modelling (MIM).

The math is :mod:`vitscope.reporting.signature`; here the results come together: folders or result
objects of the model(s) under study and of the two references. With no reference given, the zoo's
MoCo v3 (CL) and SimMIM (MIM) are analysed on the 500 CIFAR-10 test images that ship with vitscope
(:data:`vitscope.data.shipped.BANK`), for models analysed at 32 px only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitscope.api.inputs import output_folder
from vitscope.api.result import PathLike, Result
from vitscope.api.results import Signature
from vitscope.errors import VitscopeError

if TYPE_CHECKING:
    from vitscope.reporting.signature import Source

#: The references when none is given: the zoo's 32-px CIFAR-10 models.
DEFAULT_REFERENCES = {"cl": "zoo:moco-cifar10", "mim": "zoo:simmim-cifar10"}
DEFAULT_INPUT_SIZE = (3, 32, 32)

SourceLike = PathLike | Result


def _listed(x: SourceLike | Sequence[SourceLike]) -> list[SourceLike]:
    return [x] if isinstance(x, (str, os.PathLike, Result)) else list(x)


def _source(x: SourceLike) -> Source:
    """The :class:`~vitscope.reporting.signature.Source` of a results folder or a result object."""
    from vitscope.reporting.signature import read_folder, source_of

    if isinstance(x, Result):
        name = str(x.folder) if x.folder is not None else f"{type(x).__name__} of {x.label} (in memory)"
        return source_of(name, [(x.kind, x.results)])
    folder = Path(x)
    if not folder.is_dir():
        raise VitscopeError(f"'{folder}' is not a results folder")
    return read_folder(folder)


def check_small_images(sources: Sequence[Source]) -> None:
    """The default references are 32-px models: every model of ``sources`` needs an analysis at
    3×32×32, else a :class:`VitscopeError` (no silent comparison across input sizes)."""
    from vitscope.reporting.signature import ModelResults, input_size, pixels

    analysed = {spec: input_size(ModelResults(spec, analysis=r))
                for s in sources for spec, kind, r in s.per_model if kind == "analysis"}
    wrong = {s: size for s, size in analysed.items() if size != DEFAULT_INPUT_SIZE}
    if not analysed or wrong:
        got = ", ".join(f"{s} at {pixels(v)}" for s, v in wrong.items())
        raise VitscopeError(
            "without references the references are the zoo's 32-px CIFAR-10 models "
            f"({', '.join(DEFAULT_REFERENCES.values())}), for 32-px models only; "
            + (f"analysed {got}" if got else "no `vitscope analyze` results among those given")
            + ": give CL and MIM references (--reference RESULTS=cl / =mim) analysed at the model's input size")


def signature(
    results: SourceLike | Sequence[SourceLike], *, cl: SourceLike | Sequence[SourceLike] = (),
    mim: SourceLike | Sequence[SourceLike] = (), out: PathLike | None = None, batch_size: int = 100,
    seed: int = 0, device: str = "auto", workers: int | None = 0, progress: bool = True,
) -> Signature:
    """Where each model of ``results`` sits between the CL reference ``cl`` and the MIM reference
    ``mim``: for every property x of Park et al. and Shekhar et al. (attention distance and NMI,
    cosines, token volume, high frequencies, where probe accuracy peaks, shape bias, noise drop, CKA
    to each reference), s = (x − x_MIM) / (x_CL − x_MIM) per relative depth and over the first and
    later half; "does not separate" where the references differ by less than their spread, and a
    flag for a model whose attention is uniform ("looks untrained").

    ``results``, ``cl``, ``mim``: results folders (``analyze``, ``probe``, ``robustness``,
    ``compare``) or result objects, one or several each; give both references or neither. Neither:
    the zoo's MoCo v3 and SimMIM analysed on the shipped CIFAR-10 images (``batch_size``, ``seed``,
    ``device``, ``workers``; into ``out/reference-*`` when ``out`` is given), for 32-px models only.
    ``out``: also write ``signature.json``, ``signature.md`` and ``signature.png`` there.

    >>> s = vitscope.signature(vitscope.analyze("zoo:hybrid-cifar10", bank), cl=moco_folder, mim=simmim_folder)
    >>> s.to_frame().query("band == 'later half' and quantity == 'position'")
    """
    from vitscope.reporting.signature import gather_sources, signatures

    out = output_folder(out)
    sources = [(_source(x), "model") for x in _listed(results)]
    refs = [(_source(x), family) for family, xs in (("cl", cl), ("mim", mim)) for x in _listed(xs)]
    if not refs:
        check_small_images([s for s, _ in sources])
        refs = _default_references(out, batch_size=batch_size, seed=seed, device=device, workers=workers,
                                   progress=progress)
    elif {family for _, family in refs} != {"cl", "mim"}:
        raise VitscopeError("give both a CL and a MIM reference (or neither, for the zoo's)")
    result = Signature(signatures(*gather_sources(sources + refs)))
    if out is not None:
        result.save(out)
    return result


def _default_references(out: Path | None, **options: Any) -> list[tuple[Source, str]]:
    """The zoo's CL and MIM models analysed on the shipped images, as ``(source, family)`` pairs."""
    from vitscope.api.analysis import analyze
    from vitscope.data.shipped import BANK

    refs = []
    for family, spec in DEFAULT_REFERENCES.items():
        folder = None if out is None else out / f"reference-{spec.removeprefix('zoo:')}"
        refs.append((_source(analyze(spec, str(BANK), out=folder, **options)), family))
    return refs
