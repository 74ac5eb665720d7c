"""Cue-conflict stimuli: file names, folder and tar reading, the real set when present."""

from __future__ import annotations

import tarfile

import pytest
import torch
from robustness_helpers import STIMULI, shared_data, write_png
from torchvision.transforms.functional import pil_to_tensor

from vitscope.errors import VitscopeError
from vitscope.perturbation.cue_conflict import CueConflictImages, Stimulus, conflicting, parse_stimulus
from vitscope.perturbation.imagenet16 import IMAGENET16_CATEGORIES


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


def test_tar_reader_stays_inside_the_archive(tmp_path, monkeypatch):
    """Members named ../../evil.png or /abs, a symlink to a file outside and a hard link: only the
    archive's own bytes are read (a hard link to a member is that member's data), nothing is written."""
    import io

    import numpy as np

    from vitscope.perturbation import cue_conflict as cc

    rng = np.random.default_rng(0)
    outside = tmp_path / "outside"
    write_png(outside / "car2-cat1.png", rng, size=16)  # what a symlink member points at
    write_png(tmp_path / "evil.png", rng, size=16)  # where ../../evil.png would land from tar/sub/
    good = io.BytesIO()
    write_png(tmp_path / "good.png", rng, size=8)
    good.write((tmp_path / "good.png").read_bytes())
    tar_path = tmp_path / "tar" / "sub" / "cue.tar"
    tar_path.parent.mkdir(parents=True)

    def member(name: str, **kw) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        for k, v in kw.items():
            setattr(info, k, v)
        return info

    with tarfile.open(tar_path, "w") as tf:
        tf.addfile(member("car/car1-cat2.png", size=len(good.getvalue())), io.BytesIO(good.getvalue()))
        for name in ("../../evil.png", "../car/car3-cat3.png", "/car/car4-cat4.png"):
            tf.addfile(member(name, size=len(good.getvalue())), io.BytesIO(good.getvalue()))
        tf.addfile(member("car/car2-cat1.png", type=tarfile.SYMTYPE, linkname=str(outside / "car2-cat1.png")))
        tf.addfile(member("car/car5-cat5.png", type=tarfile.SYMTYPE, linkname="car1-cat2.png"))
        tf.addfile(member("car/car6-cat6.png", type=tarfile.LNKTYPE, linkname="car/car1-cat2.png"))
        tf.addfile(member("car/car7-cat7.png", type=tarfile.LNKTYPE, linkname="/etc/passwd"))
    opened: list[str] = []

    def recording_open(path, *args, **kwargs):
        opened.append(str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(cc, "open", recording_open, raising=False)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    ds = CueConflictImages(tar_path, pil_to_tensor)
    assert [s.name for s in ds.stimuli] == ["car/car1-cat2.png", "car/car6-cat6.png"]
    first, _, _, err1 = ds[0]
    linked, _, _, err2 = ds[1]
    assert err1 is None and err2 is None and first.shape == (3, 8, 8) and torch.equal(first, linked)
    assert set(opened) == {str(tar_path)}
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
