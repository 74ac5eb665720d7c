"""The shipped zoo has learned (issue 18): evidence asserted on the shipped files themselves.

Each shipped model states how it was trained, reduced its loss, classifies CIFAR-10 far above
chance with a frozen encoder, and its attention has moved away from uniform: the attention
entropy of a random ViT of the same architecture is log N in every block (N = 64 patches), and
a model whose attention stayed there (as the 3-epoch MoCo v3 of the first zoo nearly did:
0.955 log N on average) makes Park et al.'s attention findings hold for the wrong reason.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import vitscope.models  # noqa: F401
from vitscope.analysis import build_metrics, run_metrics
from vitscope.data import make_loader, model_transform, open_dataset
from vitscope.models import load
from vitscope.models.zoo import manifest, zoo_dir

SHIPPED = manifest(zoo_dir())
PRETRAINED = sorted(n for n, e in SHIPPED.items() if "source" not in e)
FINETUNED = sorted(n for n, e in SHIPPED.items() if "source" in e)  # a zoo model's encoder after fine-tuning
QUERY = Path(vitscope.models.__file__).parents[1] / "data" / "demo" / "cifar10-test-query.npz"
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no zoo models ship in this checkout")


def attention_entropy(model: torch.nn.Module) -> list[float]:
    """Mean attention entropy per block (nats) on the 200 shipped CIFAR-10 query images."""
    metrics = build_metrics(["attention"], model, torch.device("cpu"))
    loader = make_loader(open_dataset(str(QUERY), model_transform(model)), 100, workers=0, pin=False)
    return run_metrics(model, loader, metrics, device=torch.device("cpu"), progress=False)["metrics"]["attention"]["entropy"]


@pytest.fixture(scope="module")
def entropies() -> dict[str, list[float]]:
    return {name: attention_entropy(load(f"zoo:{name}")) for name in SHIPPED}


@pytest.mark.parametrize("name", PRETRAINED)
def test_manifest_states_how_it_was_trained_and_the_loss_fell(name):
    e = SHIPPED[name]
    t = e["training"]
    assert e["epochs"] >= 1 and t["steps"] > 0 and t["wall_seconds"] > 0
    assert e["recipe"]["precision"] in ("auto", "fp32", "bf16") and e["hardware"] and e["budget"]
    assert t["loss_last"] < t["loss_first"], (name, t)


@pytest.mark.parametrize("name", PRETRAINED)
def test_frozen_encoder_classifies_far_above_chance(name):
    acc = SHIPPED[name]["accuracy"]  # measured at shipping: 10,000 training / 2,000 test images
    assert acc["train_images"] >= 10_000 and acc["val_images"] >= 2_000
    assert acc["linear_last_block"] >= 0.35 and acc["knn_last_block"] >= 0.30, (name, acc)  # chance 0.10


@pytest.mark.parametrize("name", FINETUNED)
def test_fine_tuning_beats_the_linear_probe_of_its_source(name):
    """The fine-tuning claims (Park Fig. 1 left, F.3, 12 left) mean something only where fine-tuning
    beats a linear probe on the frozen encoder: same training and validation images (seeded subsets)."""
    e = SHIPPED[name]
    t, probe = e["training"], SHIPPED[e["source"].removeprefix("zoo:")]["accuracy"]
    assert e["epochs"] >= 1 and t["wall_seconds"] > 0 and e["hardware"] and e["budget"]
    assert t["loss_last"] < t["loss_first"], (name, t)
    assert (t["train_images"], t["val_images"], t["val_data"]) == (probe["train_images"], probe["val_images"],
                                                                    probe["val_data"])
    assert t["val_accuracy"] > probe["linear_last_block"], (name, t["val_accuracy"], probe["linear_last_block"])


# A shipped model whose attention left uniform on average but peaks in no block, stated rather than
# hidden (docs/reproduction.md): DINO with its prototypes frozen for the whole run learned a feature
# space (linear probe 0.42) while its attention stayed at 0.94 log N on average, 0.88 at the lowest.
NO_PEAKED_BLOCK = {"dino-cifar10": "DINO's attention peaks in no block (0.88 log N at the lowest; docs/reproduction.md)"}


def test_a_random_vit_attends_uniformly():
    """The scale the zoo is measured on: a random ViT of the zoo's architecture has entropy log N."""
    torch.manual_seed(0)
    arch = next(iter(SHIPPED.values()))["arch_kwargs"]
    random_vit = timm.create_model("vit_tiny_patch4_32", **arch).eval()
    assert (np.array(attention_entropy(random_vit)) / math.log(64)).min() > 0.99


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_attention_left_uniform_on_average(name, entropies):
    rel = np.array(entropies[name]) / math.log(64)
    assert rel.mean() <= 0.95, (name, rel.round(3))  # the first zoo's MoCo v3: 0.955


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=NO_PEAKED_BLOCK[n]))
                                  if n in NO_PEAKED_BLOCK else n for n in sorted(SHIPPED)])
def test_attention_peaks_in_some_block(name, entropies):
    rel = np.array(entropies[name]) / math.log(64)
    assert rel.min() <= 0.85, (name, rel.round(3))
