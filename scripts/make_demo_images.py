"""Build the CIFAR-10 images that ship with vitscope for `vitscope demo` (run once, offline).

    python scripts/make_demo_images.py /path/to/cifar10/test

Reads an ImageFolder copy of the CIFAR-10 *test* split (``<class>/NNNN.jpg``, e.g. the
JPEG tarball of ../shared/data extracted) and writes two disjoint ``.npz`` files into
``src/vitscope/data/demo/``: ``cifar10-test-bank.npz`` (the first 50 images of each class,
in file-name order: the k-NN memory bank) and ``cifar10-test-query.npz`` (the next 20 of
each class: the queries and the analysis images). Each holds ``images`` uint8
``[N, 32, 32, 3]``, ``labels`` and ``classes``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "src" / "vitscope" / "data" / "demo"
SPLITS = {"bank": (0, 50), "query": (50, 70)}


def main(root: Path) -> None:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    for name, (lo, hi) in SPLITS.items():
        images, labels = [], []
        for c, cls in enumerate(classes):
            for f in sorted((root / cls).iterdir())[lo:hi]:
                images.append(np.asarray(Image.open(f).convert("RGB")))
                labels.append(c)
        np.savez_compressed(OUT / f"cifar10-test-{name}.npz", images=np.stack(images),
                            labels=np.asarray(labels, np.int64), classes=np.asarray(classes))
        print(name, len(images))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
