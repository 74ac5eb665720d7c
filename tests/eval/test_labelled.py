"""Labelled sets: images without labels and images with negative labels get their own one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from vitscope.errors import VitscopeError
from vitscope.eval.labelled import open_labelled

IMAGES = np.zeros((4, 8, 8, 3), dtype=np.uint8)


def test_negative_labels_are_named_as_negative():
    with pytest.raises(VitscopeError, match=r"has negative class labels \(2 of 4 images, e\.g\. -3\)"):
        open_labelled((IMAGES, np.array([0, 1, -3, -2])), lambda im: im)


def test_images_without_labels_have_no_class_labels():
    with pytest.raises(VitscopeError, match="has no class labels"):
        open_labelled(IMAGES, lambda im: im)


def test_labels_from_zero_open():
    assert open_labelled((IMAGES, np.array([0, 1, 1, 0])), lambda im: im).num_classes == 2
