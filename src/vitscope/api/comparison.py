"""``vitscope.compare``: CKA of every layer pair and the agreement of two models (Shekhar et al.)."""

from __future__ import annotations

from collections.abc import Sequence

from vitscope.api.inputs import DataLike, ModelLike, output_folder
from vitscope.api.result import PathLike
from vitscope.api.results import Comparison
from vitscope.choices import LAYER_TYPES


def compare(
    model_a: ModelLike, model_b: ModelLike | None, data: DataLike, *, out: PathLike | None = None,
    images: int | None = 1024, batch_size: int = 32, device: str = "auto", precision: str = "fp32",
    token_reduction: str = "flatten", seed: int = 0, probes: Sequence[str] = (),
    layer_types: Sequence[str] = tuple(LAYER_TYPES), workers: int | None = None, progress: bool = True,
) -> Comparison:
    """Minibatch CKA of every layer pair of ``model_a`` and ``model_b`` (``None``: ``model_a`` against
    itself) by layer type, and the agreement of their predictions (Kendall's τ-b, F1).

    Linear CKA with the unbiased HSIC estimator (Nguyen et al.), HSIC sums accumulated over minibatches
    of ``batch_size`` ≥ 4 in float64 and the ratio taken at the end, so the value does not depend on
    the batch size (Shekhar et al. App. A). Layer types: ``block`` outputs (Shekhar Fig. 1), ``qkv``,
    ``ln1``, ``fc1``, ``attn_out`` (Fig. 2). Agreement needs a classifier on both models: their own
    heads or one ``probes`` file each (``vitscope probe --save-probe``). ``random:`` weights get
    ``seed``, the second model ``seed + 1``. ``out``: also write ``results.json`` and ``cka_*.png``.

    >>> c = vitscope.compare("zoo:moco-cifar10", "zoo:simmim-cifar10", images_array)
    >>> c.plot("block"); c.cka("block").diagonal()
    """
    from vitscope.comparison import CompareConfig, run_compare
    from vitscope.runtime import init_distributed

    rank, _, _ = init_distributed(device)
    out = output_folder(out) if rank == 0 else None
    models = [model_a] if model_b is None else [model_a, model_b]
    results = run_compare(CompareConfig(
        models=models, data=data, out=out, images=images, batch_size=batch_size, device=device, precision=precision,
        token_reduction=token_reduction, seed=seed, probes=list(probes), layer_types=tuple(layer_types),
        workers=workers, progress=progress))
    comparison = Comparison(results)
    if out is not None:
        comparison.save(out)
    return comparison
