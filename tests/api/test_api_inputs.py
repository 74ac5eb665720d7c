"""Every form of model and data the API takes gives the numbers of the spec / folder; bad input is one
VitscopeError line."""

from __future__ import annotations

import re

import numpy as np
import pytest
import timm
import torch
from conftest import CL
from PIL import Image
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import vitscope
from vitscope.errors import VitscopeError

RUN = {"metrics": "attention", "batch_size": 5, "workers": 0, "progress": False}


def attention(a: vitscope.Analysis) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=float) for k, v in a.metrics["attention"].items() if isinstance(v, list)}


class PilImages(Dataset):
    """A torchvision-style data set: (PIL image, label) items, ``targets`` and ``classes``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.items = [Image.fromarray(x) for x in images]
        self.targets = labels.tolist()
        self.classes = [str(c) for c in range(10)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i], self.targets[i]


def test_every_data_form_gives_the_folders_numbers(demo, demo_folder, demo_npz):
    """Each form feeds the model the folder's tensors (all of them checked); two go the whole way."""
    from vitscope.data import model_transform, open_data

    x, y = demo
    chw = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    forms = {
        "npz path": str(demo_npz), "Path": demo_folder, "array NHWC uint8": x, "tensor NCHW uint8": chw,
        "tensor NCHW float in [0, 1]": chw.float() / 255, "(images, labels)": (x, y),
        "TensorDataset": TensorDataset(chw, torch.from_numpy(y)), "PIL Dataset": PilImages(x, y),
        "DataLoader": DataLoader(TensorDataset(chw), batch_size=3),
    }
    transform = model_transform(vitscope.load(CL))
    folder = open_data(str(demo_folder), transform)
    for name, data in forms.items():
        ds = open_data(data, transform)
        assert len(ds) == len(folder), name
        for i in range(len(ds)):
            assert torch.equal(ds[i][0], folder[i][0]), (name, i)
        if name in ("npz path", "(images, labels)", "TensorDataset", "PIL Dataset"):
            np.testing.assert_array_equal(ds.labels, y, err_msg=name)
    want = attention(vitscope.analyze(CL, str(demo_folder), **RUN))
    for name, spec in (("tensor NCHW float in [0, 1]", "tensor float32 [12, 3, 32, 32]"),
                       ("DataLoader", "DataLoader of TensorDataset (Dataset, 12 items)")):
        got = vitscope.analyze(CL, forms[name], **RUN)
        assert got.results["data"]["images"] == len(x) and got.results["data"]["spec"] == spec, name
        for key, value in attention(got).items():
            np.testing.assert_array_equal(value, want[key], err_msg=f"{name}: {key}")


def test_a_model_in_memory_gives_the_specs_numbers(demo):
    x = demo[0][:6]
    by_spec = vitscope.analyze(CL, x, **RUN)
    loaded = vitscope.analyze(vitscope.load(CL), x, **RUN)
    assert loaded.results["model"]["spec"] == CL
    for key, value in attention(by_spec).items():
        np.testing.assert_array_equal(attention(loaded)[key], value)
    own = timm.create_model("vit_tiny_patch4_32", num_classes=0, depth=2, embed_dim=48, num_heads=2)
    assert vitscope.analyze(own, x, **RUN).results["model"]["spec"] == "VisionTransformer (in memory)"


class Stream(IterableDataset):
    def __iter__(self):
        yield torch.zeros(3, 32, 32)


@pytest.mark.parametrize("case, data, match", [
    ("normalised floats", np.full((4, 32, 32, 3), -1.5, dtype=np.float32), "normalised already"),
    ("integers", np.zeros((4, 32, 32, 3), dtype=np.int64), "expected uint8 pixels or floats in"),
    ("five channels", np.zeros((4, 32, 32, 5), dtype=np.uint8), "with C in"),
    ("one image", np.zeros((3, 32, 32), dtype=np.uint8), "one image or N greyscale images"),
    ("no images", np.zeros((0, 32, 32, 3), dtype=np.uint8), "N > 0"),
    ("not finite", np.full((4, 32, 32, 3), np.nan, dtype=np.float32), "pixel values in [0, 1]"),
    ("labels", (np.zeros((4, 32, 32, 3), dtype=np.uint8), [0, 1]), "labels of shape [2] for 4 images"),
    ("iterable", Stream(), "has no length"),
    ("1-D items", TensorDataset(torch.zeros(2, 4)), "a data set item's image has shape [4]"),
    ("other", 3.5, "cannot use a float as images"),
])
def test_bad_data_is_one_line(case, data, match):
    from vitscope.data import open_data

    with pytest.raises(VitscopeError, match=re.escape(match)) as e:
        open_data(data, lambda image: torch.zeros(3, 32, 32))
    assert "\n" not in str(e.value)


def test_bad_data_stops_the_api_before_any_work(demo, tmp_path):
    with pytest.raises(VitscopeError, match="normalised already"):
        vitscope.analyze(CL, demo[0] / 127.5 - 1.0, out=tmp_path / "out", **RUN)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("model, match", [
    (torch.nn.Linear(3, 3), "the Linear given is a Linear, not a Vision Transformer"),
    ("nosuch:thing", "unknown model spec"),
])
def test_bad_model_is_one_line(demo, model, match):
    with pytest.raises(VitscopeError, match=re.escape(match)):
        vitscope.analyze(model, demo[0][:2], **RUN)


def test_probe_needs_labels(demo):
    with pytest.raises(VitscopeError, match="has no class labels"):
        vitscope.probe(CL, demo[0], demo, linear=False, workers=0, progress=False)
