"""``vitscope.probe``: k-NN and linear probes after every block of a frozen ViT."""

from __future__ import annotations

from collections.abc import Sequence

from vitscope.api.inputs import DataLike, ModelLike, names, output_folder
from vitscope.api.result import PathLike
from vitscope.api.results import Probe
from vitscope.choices import KNN_K, KNN_TEMPERATURE, TOKEN_FEATURES


def probe(
    model: ModelLike, train: DataLike, val: DataLike, *, out: PathLike | None = None, images: int | None = None,
    val_images: int | None = None, knn: bool = True, linear: bool = True,
    features: str | Sequence[str] = ",".join(TOKEN_FEATURES), epochs: int = 50, batch_size: int = 256,
    optimizer: str = "sgd", lr: float | None = None, weight_decay: float = 0.0, k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE, save_probe: bool = False, probe_at: str = "pooled",
    cache_features: bool = True, device: str = "auto", workers: int | None = None, seed: int = 0,
    progress: bool = True,
) -> Probe:
    """Weighted k-NN and linear probes on the features of every block of ``model``, trained on the
    labelled ``train`` images and scored on ``val`` (same classes).

    Features per block: the CLS token, the mean of all tokens (GAP) and of the patch tokens only
    (``gap_noprefix``, Shekhar's "GAP w/o CLS"), plus the model's final pooled features. k-NN: the
    ``k`` nearest training features by cosine similarity vote with weights exp(sim / ``temperature``)
    (k = 20, T = 0.07: Shekhar Fig. 3). Linear probes: BatchNorm without affine + a linear layer,
    ``epochs`` of ``optimizer`` (Park Fig. 11). Labelled data: a class folder, a ``.npz`` with labels,
    ``cifar10:train``, ``(images, labels)`` or a Dataset of ``(image, label)``. ``save_probe``: keep
    the probe at ``probe_at`` (``pooled`` or ``FEATURE:BLOCK``, e.g. ``cls:11``) as ``probe.pt``.
    ``out``: also write ``probe.json``, ``knn.png``, ``linear.png`` (and the feature cache, when
    model and data are specs) there.

    >>> p = vitscope.probe("zoo:moco-cifar10", (bank, bank_labels), (query, query_labels), linear=False)
    >>> p.to_frame().query("feature == 'cls'")
    """
    from vitscope.eval.linear_probe import ProbeTraining
    from vitscope.eval.probe_run import ProbeRun, run_probe

    out = output_folder(out)
    results, state = run_probe(ProbeRun(
        model=model, train_data=train, val_data=val, out=out, images=images, val_images=val_images, knn=knn,
        linear=linear, features=",".join(names(features)), k=k, temperature=temperature,
        training=ProbeTraining(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                               weight_decay=weight_decay, seed=seed),
        batch_size=batch_size, device=device, save_probe=probe_at if save_probe else None,
        cache_features=cache_features, workers=workers, seed=seed), progress=progress)
    result = Probe(results, probe_state=state)
    if out is not None:
        result.save(out)
    return result
