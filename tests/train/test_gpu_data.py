"""Resident and streamed training images: sharding, caching."""

import numpy as np
import torch
from PIL import Image

from vitscope.train.gpu_data import DeviceImages, StreamedImages, load_folder_cached, open_training_images

CPU = torch.device("cpu")


def test_ranks_split_each_global_batch():
    images = np.arange(20 * 2 * 2 * 3, dtype=np.uint8).reshape(20, 2, 2, 3)
    one = DeviceImages(images, CPU, batch_size=8, seed=1)
    two = [DeviceImages(images, CPU, batch_size=8, rank=r, world=2, seed=1) for r in range(2)]
    assert one.steps_per_epoch == 2
    for whole, a, b in zip(one.epoch(3), two[0].epoch(3), two[1].epoch(3)):
        assert torch.equal(whole, torch.cat([a, b]))
    first = [b[:, 0, 0, 0] for b in one.epoch(0)]
    assert not torch.equal(torch.cat(first), torch.cat([b[:, 0, 0, 0] for b in one.epoch(1)]))


def _folder(root, n=12, size=8):
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")


def test_folder_decoded_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("VITSCOPE_DATA", str(tmp_path / "cache"))
    _folder(tmp_path / "imgs")
    images, labels = load_folder_cached(tmp_path / "imgs", workers=0)
    assert images.shape == (12, 8, 8, 3) and images.dtype == np.uint8 and sorted(set(labels)) == [0, 1]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again, _ = load_folder_cached(tmp_path / "imgs", workers=0)
    assert np.array_equal(images, again)
    ref = np.asarray(Image.open(tmp_path / "imgs" / "a" / "1.png"))
    assert any(np.array_equal(ref, im) for im in images)


def test_streamed_matches_resident_order(tmp_path, monkeypatch):
    monkeypatch.setenv("VITSCOPE_DATA", str(tmp_path / "cache"))
    _folder(tmp_path / "imgs")
    kw = dict(batch_size=4, rank=0, world=1, seed=2, num_images=None, load_size=8, workers=0)
    resident = open_training_images(str(tmp_path / "imgs"), CPU, on_device="yes", **kw)
    streamed = open_training_images(str(tmp_path / "imgs"), CPU, on_device="no", **kw)
    assert isinstance(streamed, StreamedImages) and streamed.steps_per_epoch == 3
    for a, b in zip(resident.epoch(1), streamed.epoch(1)):
        assert torch.equal(a, b)
