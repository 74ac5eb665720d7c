"""``vitscope.analyze``: every per-layer metric of one model over an image set, in one pass."""

from __future__ import annotations

from collections.abc import Sequence

from vitscope.api.inputs import DataLike, ModelLike, names, output_folder
from vitscope.api.result import PathLike
from vitscope.api.results import Analysis

DEFAULT_METRICS = "attention,similarity,spectrum,fourier"


def analyze(
    model: ModelLike, data: DataLike, *, out: PathLike | None = None, images: int | None = None,
    batch_size: int = 64, device: str = "auto", precision: str = "fp32",
    metrics: str | Sequence[str] = DEFAULT_METRICS, seed: int = 0, workers: int | None = None,
    progress: bool = True, plots: bool = True, decoder: bool = False, compile: bool = False,
) -> Analysis:
    """Attention, similarity, spectra and Fourier of ``model``, layer by layer, over ``data``.

    One streaming pass over ``data`` (a seeded random subset of ``images`` when given) through the
    model's own timm preprocessing; every metric reduces its tensors inside the forward hooks:

    - ``attention``: attention distance Σ_k a(q,k)·d(q,k) in pixels (Park Fig. 3), NMI of attention
      I(q;k)/sqrt(H(q)·H(k)) (Fig. 4; per head Fig. E.1), attention entropy; prefix tokens dropped;
    - ``similarity``: cosine between heads, before vs after self-attention, between tokens (Fig. 5);
    - ``spectrum``: singular value spectra of one image's tokens and of GAP vectors (Fig. 7);
    - ``fourier``: Δ log amplitude of the feature maps along the half-diagonal (Fig. 9).
    - ``norms`` (not default): ℓ2 norms of the patch tokens per block, the high-norm outliers
      (> 4 × the image's median norm) and where they sit (Darcet et al. ICLR 2024, Figs. 3, 4a).

    ``out``: also write ``results.json`` and one PNG per metric there (``plots``), as ``vitscope
    analyze`` does. ``decoder``: an MAE checkpoint's decoder too (Park Fig. 10; ``model`` must be the
    checkpoint's path). ``compile``: torch.compile the attention and similarity reductions. Under
    ``torchrun`` every process analyses a shard; the first writes the files.

    >>> a = vitscope.analyze("zoo:moco-cifar10", images_array)   # uint8 [N, 32, 32, 3]
    >>> a.to_frame().query("quantity == 'nmi' and head.isna()")
    """
    import torch

    from vitscope.analysis import analyze_model
    from vitscope.models import as_vit
    from vitscope.runtime import init_distributed

    rank, world, dev = init_distributed(device)
    out = output_folder(out) if rank == 0 else None
    torch.manual_seed(seed)
    vit = as_vit(model, seed=seed)
    results = analyze_model(vit, data, images=images, batch_size=batch_size, device=dev, precision=precision,
                            metrics=names(metrics), seed=seed, workers=workers, progress=progress,
                            decoder=decoder, compile=compile, rank=rank, world=world)
    analysis = Analysis(results)
    if out is not None:
        analysis.save(out, plots=plots)
    return analysis
