"""Labelled image sets for evaluation: every image must carry a class label."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset, Subset

from vitscope.data import subset
from vitscope.data.images import Transform
from vitscope.data.sources import DataSource, describe_data, open_data
from vitscope.errors import VitscopeError


def labels_of(ds: Dataset) -> np.ndarray:
    """Labels ``[N]`` of a data set from ``vitscope.data`` (``-1`` = unlabelled), through subsets."""
    if isinstance(ds, Subset):
        return labels_of(ds.dataset)[np.asarray(ds.indices, dtype=np.int64)]
    labels = getattr(ds, "labels", None)
    if labels is None:
        raise VitscopeError(f"{type(ds).__name__} carries no labels")
    return np.asarray(labels, dtype=np.int64)


def classes_of(ds: Dataset) -> list[str]:
    """Class names (folder names, CIFAR-10 names) or ``[]`` when the set does not name them."""
    if isinstance(ds, Subset):
        return classes_of(ds.dataset)
    return list(getattr(ds, "classes", []) or [])


@dataclass
class LabelledSet:
    """A data set with its spec (or description), labels ``[N]`` and class names (``num_classes`` of them)."""

    spec: str
    dataset: Dataset
    labels: np.ndarray
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)


def open_labelled(source: DataSource, transform: Transform, images: int | None = None, seed: int = 0) -> LabelledSet:
    """Open ``source`` (:func:`vitscope.data.sources.open_data`), take a seeded subset, require labels.

    Raises :class:`VitscopeError` when the images carry no labels (flat folder, ``.npz`` without
    ``labels``, an array without labels) or some carry a negative one, since probes, k-NN and
    fine-tuning all need a class 0 … C−1 for every image.
    """
    full = open_data(source, transform)
    spec = describe_data(source)
    given = labels_of(full)
    if len(given) and (given == -1).all():  # -1: vitscope's mark of an image without a label
        raise VitscopeError(
            f"data '{spec}' has no class labels: evaluation needs a folder with one sub-folder per class, "
            "a .npz with a 'labels' array, cifar10:train / cifar10:test, (images, labels) or a Dataset of "
            "(image, label) items"
        )
    negative = given[given < 0]
    if len(negative):
        raise VitscopeError(
            f"data '{spec}' has negative class labels ({len(negative)} of {len(given)} images, e.g. "
            f"{int(negative.min())}): evaluation needs labels 0, 1, ..., C-1 (-1 also marks an image without one)"
        )
    ds = subset(full, images, seed)
    labels = labels_of(ds)
    classes = classes_of(full) or [str(c) for c in range(int(labels_of(full).max()) + 1)]
    return LabelledSet(spec, ds, labels, classes)


def check_same_classes(train: LabelledSet, val: LabelledSet) -> None:
    """Train and validation sets must name the same classes in the same order."""
    if train.classes != val.classes:
        raise VitscopeError(
            f"train data '{train.spec}' has classes {train.classes[:10]}{'...' if train.num_classes > 10 else ''} "
            f"but validation data '{val.spec}' has {val.classes[:10]}{'...' if val.num_classes > 10 else ''}"
        )
