"""Looking inside single images: ``vitscope.inspect`` (the papers' per-image figures) and
``vitscope.capture`` (the per-block tensors themselves, ``run_with_cache`` for ViTs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vitscope.api.inputs import (
    DataLike,
    ModelLike,
    ResultLike,
    image_files,
    output_folder,
)
from vitscope.api.result import PathLike
from vitscope.api.results import Analysis, Inspection, as_result
from vitscope.errors import VitscopeError

#: What :func:`capture` returns by default: attention maps, tokens before / after attention, block outputs.
DEFAULT_TAPS = ("attn", "block_in", "attn_res", "block_out")


def inspect(
    model: ModelLike | None = None, data: DataLike | PathLike | Sequence[PathLike] | None = None, *,
    out: PathLike | None = None, images: int = 18, classes: Sequence[str] = (), query: Sequence[str] = (),
    heads: bool = False, block: int | None = None, maps: int = 2, explorer_images: int = 4,
    results: Sequence[ResultLike] = (), labels: Sequence[str] = (), device: str = "auto", precision: str = "fp32",
    seed: int = 0, perplexity: float = 30.0, batch_size: int = 8, progress: bool = True,
) -> Inspection:
    """The papers' single-image figures of ``model`` on ``data``, and the attention explorer page.

    ``data``: image files (a path or a list), or any data set (folder, ``.npz``, array, Dataset, ...)
    from which ``images`` are drawn, seeded, spread over ``classes`` (default the first three). Figures:
    attention of the ``query`` patches (``"ROW,COL"``; default the centre and the top-left corner)
    through depth, mean over heads (Park Fig. 2; every head with ``heads``) for the first ``maps``
    images; patch tokens before/after self-attention of ``block`` in one PCA (Fig. 6); t-SNE of the
    tokens after ``block`` (Fig. E.2); ``explorer.html``. ``results``: analyses (objects or folders)
    whose per-head NMI of ``block`` becomes a KDE (Fig. E.1b), labelled ``labels``. ``out``: write the
    files and ``inspect.json`` there, as ``vitscope inspect`` does.

    >>> ins = vitscope.inspect("zoo:moco-cifar10", images_array[:4], maps=1)
    >>> ins.plot()   # attention_maps_1.png
    """
    from vitscope.data.sources import describe_data
    from vitscope.models import as_vit, spec_of
    from vitscope.runtime import resolve_device
    from vitscope.views.collect import from_data, from_paths
    from vitscope.views.run import inspect_model, inspect_record, nmi_kde

    if model is None and not results:
        raise VitscopeError("nothing to inspect: give a model (and its images) and/or analysis results")
    if model is not None and data is None:
        raise VitscopeError("give the images to inspect the model on")
    out = output_folder(out)
    entries: dict[str, Any] = {}
    files: dict[str, Any] = {}
    fields: dict[str, Any] = {"seed": seed}
    if results:
        analyses = [as_result(r, Analysis, reader="inspect") for r in results]
        runs = [(labels[i] if i < len(labels) else a.label, a.results) for i, a in enumerate(analyses)]
        entries["nmi_kde"], files["nmi_kde.png"] = nmi_kde(runs, block)
    if model is not None:
        torch.manual_seed(seed)
        vit = as_vit(model, seed=seed)
        paths = image_files(data)
        imgs = from_paths(paths, vit) if paths else from_data(data, vit, images, seed, classes)  # type: ignore[arg-type]
        dev = resolve_device(device)
        found, drawn = inspect_model(vit, imgs, queries=query, heads=heads, block=block, maps=maps,
                                     explorer_images=explorer_images, device=dev, precision=precision, seed=seed,
                                     perplexity=perplexity, batch_size=batch_size, progress=progress)
        entries.update(found)
        files = {**drawn, **files}
        fields.update(model=spec_of(model),
                      data={"spec": [str(p) for p in paths] if paths else describe_data(data),  # type: ignore[arg-type]
                            "images": len(imgs.names), "names": imgs.names, "classes": imgs.classes,
                            "skipped": imgs.skipped},
                      device=str(dev), precision=precision)
    inspection = Inspection(inspect_record(entries, **fields), files=files)
    if out is not None:
        inspection.save(out)
    return inspection


def capture(
    model: ModelLike, images: DataLike | PathLike | Sequence[PathLike], taps: Sequence[str] = DEFAULT_TAPS, *,
    n: int | None = None, device: str = "auto", precision: str = "fp32",
) -> dict[str, list[torch.Tensor]]:
    """The per-block tensors the metrics read, for one batch of ``images`` (the first ``n``, in order):
    ``{tap: [tensor of block 1, block 2, ...]}``, float32 on the CPU.

    Taps (:mod:`vitscope.taps`; N tokens, prefix tokens first, B images, H heads, D width):
    ``attn`` softmax attention ``[B, H, N, N]`` (rows sum to 1), ``attn_logits`` the scores before it,
    ``block_in`` / ``attn_res`` / ``block_out`` the residual stream entering the block, after
    self-attention, leaving it ``[B, N, D]``, ``head_out`` per-head ``attn @ v`` ``[B, N, H, D/H]``,
    ``qkv`` ``[B, N, 3D]``, ``ln1`` ``[B, N, D]``, ``fc1`` ``[B, N, D_mlp]``. ``images``: image files
    or any data set; each goes through the model's own preprocessing.

    >>> cache = vitscope.capture("zoo:moco-cifar10", images_array[:4], taps=["attn", "block_out"])
    >>> cache["attn"][5].shape   # block 6: [4, heads, N, N]
    """
    from vitscope.models import as_vit
    from vitscope.runtime import resolve_device
    from vitscope.taps import TAPS
    from vitscope.views.collect import collect, first_images, from_paths

    unknown = [t for t in taps if t not in TAPS]
    if unknown or not taps:
        raise VitscopeError(f"unknown taps {unknown}. Valid options are: {list(TAPS)}")
    vit = as_vit(model)
    paths = image_files(images)
    imgs = from_paths(paths[:n], vit) if paths else first_images(images, vit, n)  # type: ignore[arg-type]
    return collect(vit, imgs.tensors, taps, device=resolve_device(device), precision=precision,
                   batch_size=len(imgs.tensors))
