"""``vitscope.robustness``: accuracy under frequency-band noise and cue-conflict shape bias (Park Fig. 8)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from vitscope.api.inputs import DataLike, ModelLike, output_folder
from vitscope.api.result import PathLike
from vitscope.api.results import Robustness
from vitscope.choices import NOISE_FREQUENCIES


def robustness(
    models: ModelLike | Sequence[ModelLike], data: DataLike | None = None, *, cue_conflict: PathLike | None = None,
    probes: Sequence[str | None] = (), out: PathLike | None = None, images: int | None = None,
    batch_size: int = 64, device: str = "auto", noise_strength: float = 0.1,
    frequencies: Sequence[float] = NOISE_FREQUENCIES, band_width: float = 0.1, band_norm: str = "max",
    noise_scale: str = "band", seed: int = 0, class_map: Sequence[str] = (), workers: int | None = None,
    progress: bool = True,
) -> Robustness:
    """Top-1 accuracy of each model on the labelled ``data``, clean and with band-limited noise centred
    at each of ``frequencies`` (units of π, width ``band_width``; RMS ``noise_strength`` in pixel
    units; Park Fig. 8 right), and the shape bias on the cue-conflict stimuli ``cue_conflict`` (a folder
    or the .tar of Geirhos et al.): shape decisions / (shape + texture decisions) (Fig. 8 left).

    Each model classifies with its own head or a ``probes`` file (``None`` / ``"none"``: its head);
    models that are not 1000-class ImageNet classifiers need ``class_map`` (``category=class``,
    ``cifar10``, or a file) for the shape bias. ``out``: also write ``results.json``, ``noise_drop.png``
    and ``shape_bias.png`` there.

    >>> r = vitscope.robustness(["timm:vit_small_patch16_224.augreg_in21k_ft_in1k"], "~/imagenet/val", images=500)
    """
    from vitscope.perturbation.run import RobustnessConfig, run

    out = output_folder(out)
    listed = [models] if isinstance(models, (str, nn.Module)) else list(models)
    results = run(RobustnessConfig(
        models=listed, out=None if out is None else str(out), probes=list(probes), data=data,
        cue_conflict=None if cue_conflict is None else str(cue_conflict), images=images, batch_size=batch_size,
        device=device, noise_strength=noise_strength, frequencies=list(frequencies), band_width=band_width,
        band_norm=band_norm, noise_scale=noise_scale, seed=seed, class_map=list(class_map), workers=workers,
        progress=progress))
    result = Robustness(results)
    if out is not None:
        result.save(out)
    return result
