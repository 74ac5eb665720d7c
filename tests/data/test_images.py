import numpy as np
import pytest
import torch
from PIL import Image

from vitscope.data import SkipLog, iterate, make_loader, open_dataset, subset
from vitscope.data.images import to_rgb
from vitscope.errors import VitscopeError


def tf(img):
    return torch.from_numpy(np.asarray(img.resize((8, 8)), dtype=np.float32)).permute(2, 0, 1) / 255


def write_good(path, mode="RGB", size=(10, 12), **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, (200, 30, 30))
    (img.convert(mode) if mode != "RGB" else img).save(path, **save)


def test_bad_files_are_skipped_with_names(tmp_path):
    root = tmp_path / "imgs"
    write_good(root / "a" / "ok.png")
    write_good(root / "a" / "ok2.jpg")
    (root / "a" / "empty.jpg").write_bytes(b"")
    (root / "b").mkdir()
    (root / "b" / "notes.txt").write_text("not an image")
    good = (root / "a" / "ok2.jpg").read_bytes()
    (root / "b" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "b" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    ds = open_dataset(str(root), tf)
    assert ds.classes == ["a", "b"]
    skips = SkipLog()
    batches = list(iterate(make_loader(ds, 2, workers=0), skips))
    assert sum(len(b.images) for b in batches) == 2
    assert skips.count == 4
    names = " ".join(skips.messages)
    for bad in ("empty.jpg", "notes.txt", "truncated.jpg", "corrupt.png"):
        assert bad in names


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "LA", "I;16", "1"])
def test_odd_modes_become_rgb(tmp_path, mode):
    path = tmp_path / f"img.{'tif' if mode in ('CMYK', 'I;16') else 'png'}"
    write_good(path, mode=mode)
    ds = open_dataset(str(tmp_path), tf)
    x, label, _, err = ds[0]
    assert err is None and x.shape == (3, 8, 8) and label == -1  # flat folder: no classes


def test_rgba_alpha_composited_on_white():
    img = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    assert to_rgb(img).getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_greyscale_rescaled_not_saturated():
    arr = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    rgb = np.asarray(to_rgb(Image.fromarray(arr)))  # PIL opens 16-bit PNGs as I;16 or I
    assert rgb[0, 0, 0] == 0 and rgb[1, 1, 0] == 255 and 0 < rgb[0, 1, 0] < rgb[1, 0, 0] < 255


def test_npz_arrays(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (5, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=imgs, labels=np.arange(5))
    ds = open_dataset(str(tmp_path / "d.npz"), tf)
    assert len(ds) == 5 and ds[3][1] == 3
    np.savez(tmp_path / "grey.npz", x=imgs[..., 0])
    assert open_dataset(str(tmp_path / "grey.npz"), tf)[0][0].shape == (3, 8, 8)


@pytest.mark.parametrize("bad, match", [
    ("missing_folder", "does not exist"),
    ("empty_folder", "contains no files"),
    ("bad.npz", "cannot read"),
    ("nokey.npz", "no 'images'"),
    ("float.npz", "uint8"),
    ("cifar10:val", "split"),
])
def test_bad_data_specs_give_clear_errors(tmp_path, bad, match):
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "bad.npz").write_bytes(b"nope")
    np.savez(tmp_path / "nokey.npz", foo=np.zeros(3))
    np.savez(tmp_path / "float.npz", images=np.zeros((2, 4, 4, 3)))
    spec = bad if bad.startswith("cifar10") else str(tmp_path / bad)
    with pytest.raises(VitscopeError, match=match):
        open_dataset(spec, tf)


def test_subset_is_seeded_and_spread(tmp_path):
    imgs = np.zeros((100, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=imgs, labels=np.arange(100) // 10)
    ds = open_dataset(str(tmp_path / "d.npz"), tf)
    a, b = subset(ds, 20, seed=1), subset(ds, 20, seed=1)
    assert a.indices == b.indices and len(set(ds.labels[a.indices])) > 3
    with pytest.raises(VitscopeError, match="positive"):
        subset(ds, 0, seed=1)


def test_decoder_failures_of_any_type_are_one_image_skipped(tmp_path, monkeypatch):
    """A decompression bomb (header claims 100000² px) and a codec raising an unusual type are skipped and named."""
    import struct
    import zlib

    from vitscope.data.images import UnreadableImage, read_image

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    root = tmp_path / "imgs"
    write_good(root / "ok.png")
    (root / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
                                    + chunk(b"IEND", b""))
    with pytest.raises(UnreadableImage, match="DecompressionBombError"):
        read_image(root / "bomb.png")
    write_good(root / "odd.png")
    real_load = Image.Image.load

    def struct_error_for_odd(self):
        if "odd" in str(getattr(self, "filename", "")):
            raise struct.error("unpack requires a buffer of 4 bytes")
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", struct_error_for_odd)
    skips = SkipLog()
    batches = list(iterate(make_loader(open_dataset(str(root), tf), 4, workers=0), skips))
    assert sum(len(b.images) for b in batches) == 1
    assert sorted(m.split(":")[0] for m in skips.messages) == ["bomb.png", "odd.png"]
    assert any("DecompressionBombError" in m for m in skips.messages) and any("error: unpack" in m for m in skips.messages)
