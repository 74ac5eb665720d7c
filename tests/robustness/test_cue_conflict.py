"""Cue-conflict stimuli: file names, folder and tar reading, the real set when present."""

from __future__ import annotations

import tarfile

import pytest
import torch
from robustness_helpers import STIMULI, shared_data, write_png
from torchvision.transforms.functional import pil_to_tensor

from vitscope.errors import VitscopeError
from vitscope.robustness.cue_conflict import CueConflictImages, Stimulus, conflicting, parse_stimulus
from vitscope.robustness.imagenet16 import IMAGENET16_CATEGORIES


def test_parse_real_names():
    assert parse_stimulus("style-transfer-preprocessed-512/airplane/airplane1-bicycle2.png") == Stimulus(
        "style-transfer-preprocessed-512/airplane/airplane1-bicycle2.png", "airplane", "bicycle")
    assert parse_stimulus("keyboard10-elephant3.png").texture == "elephant"


@pytest.mark.parametrize("name", ["airplane1_bicycle2.png", "airplane-bicycle2.png", "Airplane1-bicycle2.png",
                                  "airplane1-bicycle2.txt", "airplane1-bicycle2-cat3.png", "cat/dog1-cat1.png"])
def test_parse_refuses_malformed(name):
    with pytest.raises(ValueError, match="not named|class folder"):
        parse_stimulus(name)


def test_conflicting_drops_same_class_and_unmapped():
    stimuli = [parse_stimulus(f"{s}{i}-{t}{j}.png") for s, i, t, j in STIMULI]
    sel = conflicting(stimuli, ["airplane", "bird", "car", "cat"])
    assert (sel.same_class, sel.outside_map, len(sel.indices)) == (2, 2, 7)
    assert all(stimuli[i].shape != stimuli[i].texture for i in sel.indices)


def test_folder_and_tar_read_the_same_images(cue_folder, tmp_path):
    tar_path = tmp_path / "cue.tar"
    with tarfile.open(tar_path, "w") as tf:
        tf.add(cue_folder / "style-transfer-preprocessed-512", arcname="style-transfer-preprocessed-512")
    folder, tar = CueConflictImages(cue_folder, pil_to_tensor), CueConflictImages(tar_path, pil_to_tensor)
    assert len(folder) == len(tar) == len(STIMULI)
    assert [s.name for s in folder.stimuli] == [s.name for s in tar.stimuli]
    for i in (0, 5, len(folder) - 1):
        a, _, idx, err = folder[i]
        b, _, _, _ = tar[i]
        assert err is None and idx == i and a.shape == (3, 64, 64) and torch.equal(a, b)


def test_malformed_names_in_a_folder_are_refused_with_the_names(cue_folder):
    import numpy as np

    write_png(cue_folder / "style-transfer-preprocessed-512" / "cat" / "cat_3.png", np.random.default_rng(0))
    with pytest.raises(VitscopeError, match=r"1 malformed .*cat_3\.png"):
        CueConflictImages(cue_folder, pil_to_tensor)


def test_missing_empty_and_compressed_inputs(tmp_path, cue_folder):
    with pytest.raises(VitscopeError, match="does not exist"):
        CueConflictImages(tmp_path / "nope", pil_to_tensor)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VitscopeError, match="no cue-conflict images"):
        CueConflictImages(tmp_path / "empty", pil_to_tensor)
    gz = tmp_path / "cue.tar.gz"
    with tarfile.open(gz, "w:gz") as tf:
        tf.add(cue_folder, arcname="cue")
    with pytest.raises(VitscopeError, match="compressed"):
        CueConflictImages(gz, pil_to_tensor)


def test_unreadable_stimulus_is_reported_not_raised(cue_folder):
    path = cue_folder / "style-transfer-preprocessed-512" / "car" / "car1-cat2.png"
    path.write_bytes(b"not a png")
    ds = CueConflictImages(cue_folder, pil_to_tensor)
    i = [s.name for s in ds.stimuli].index("style-transfer-preprocessed-512/car/car1-cat2.png")
    img, _, _, err = ds[i]
    assert img is None and "car1-cat2.png" in err


def test_real_cue_conflict_tar():
    data = shared_data()
    if data is None or not (data / "cue-conflict.tar").is_file():
        pytest.skip("../shared/data/cue-conflict.tar (or $VITSCOPE_SHARED_DATA) not present")
    ds = CueConflictImages(data / "cue-conflict.tar", pil_to_tensor)
    assert len(ds) == 1280
    assert sorted({s.shape for s in ds.stimuli}) == list(IMAGENET16_CATEGORIES)
    sel = conflicting(ds.stimuli, IMAGENET16_CATEGORIES)
    assert (sel.same_class, sel.outside_map, len(sel.indices)) == (80, 0, 1200)
    img, _, _, err = ds[0]
    assert err is None and img.shape == (3, 224, 224)
