"""The shipped zoo has learned (issue 18): evidence asserted on the shipped files themselves.

Each shipped model states how it was trained, reduced its loss, classifies CIFAR-10 far above
chance with a frozen encoder, and its attention has moved away from uniform: the attention
entropy of a random ViT of the same architecture is log N in every block (N = 64 patches), and
a model whose attention stayed there (as the 3-epoch MoCo v3 of the first zoo nearly did:
0.955 log N on average) makes Park et al.'s attention findings hold for the wrong reason. The
shipped MoCo v3 and SimMIM show the directions of Park et al. Figs. 3-4 (attention distance, NMI)
and Shekhar et al. Fig. 3 (20-NN accuracy of the last block).
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


def attention(model: torch.nn.Module) -> dict:
    """Attention metrics per block (entropy in nats, distance in px, NMI) on the 200 shipped CIFAR-10
    query images."""
    metrics = build_metrics(["attention"], model, torch.device("cpu"))
    loader = make_loader(open_dataset(str(QUERY), model_transform(model)), 100, workers=0, pin=False)
    return run_metrics(model, loader, metrics, device=torch.device("cpu"), progress=False)["metrics"]["attention"]


def attention_entropy(model: torch.nn.Module) -> list[float]:
    return attention(model)["entropy"]


@pytest.fixture(scope="module")
def attentions() -> dict[str, dict]:
    return {name: attention(load(f"zoo:{name}")) for name in SHIPPED}


@pytest.fixture(scope="module")
def entropies(attentions) -> dict[str, list[float]]:
    return {name: a["entropy"] for name, a in attentions.items()}


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


# Park et al. Figs. 3-4 and Shekhar et al. Fig. 3 on the shipped MoCo v3 and SimMIM (the directions
# `make demo` and docs/reproduction.md report), measured on the shipped files.
CL_MIM = pytest.mark.skipif(not {"moco-cifar10", "simmim-cifar10"} <= set(SHIPPED),
                            reason="the zoo's MoCo v3 and SimMIM do not ship in this checkout")


def later_half(values: list[float]) -> float:
    return float(np.mean(values[len(values) // 2:]))


@CL_MIM
def test_moco_attends_more_globally_than_simmim_park_fig3(attentions):
    moco, simmim = (later_half(attentions[f"{m}-cifar10"]["distance"]) for m in ("moco", "simmim"))
    assert moco > simmim, (moco, simmim)  # measured at shipping: 15.9 vs 8.1 px (1,000 test images)


@CL_MIM
def test_moco_attention_is_less_query_specific_than_simmims_park_fig4(attentions):
    moco, simmim = (later_half(attentions[f"{m}-cifar10"]["nmi"]) for m in ("moco", "simmim"))
    assert moco < simmim, (moco, simmim)  # measured at shipping: 0.030 vs 0.317 (1,000 test images)


@CL_MIM
def test_moco_last_block_holds_more_class_information_than_simmims_shekhar_fig3():
    """20-NN accuracy of the last block's CLS token: in the manifests (10,000 training / 2,000 test
    images, measured at shipping) and recomputed here from the shipped weights, the 500 shipped bank
    images as the training set and the 200 query images as queries."""
    from vitscope.eval.features import extract_features
    from vitscope.eval.knn import knn_accuracy
    from vitscope.eval.labelled import open_labelled

    moco, simmim = (SHIPPED[f"{m}-cifar10"]["accuracy"]["knn_last_block"] for m in ("moco", "simmim"))
    assert moco > simmim, (moco, simmim)  # 0.512 vs 0.343
    acc = {}
    for m in ("moco", "simmim"):
        model = load(f"zoo:{m}-cifar10")
        bank, query = (extract_features(model, open_labelled(str(QUERY.with_name(f"cifar10-test-{part}.npz")),
                                                             model_transform(model)),
                                        ("cls",), batch_size=100, device="cpu", workers=0)
                       for part in ("bank", "query"))
        last = [torch.from_numpy(np.asarray(f.blocks["cls"][:, -1], dtype=np.float32)) for f in (bank, query)]
        acc[m] = knn_accuracy(last[0], torch.from_numpy(bank.labels), last[1], torch.from_numpy(query.labels), 10)
    # 0.375 vs 0.265 at shipping: 22 of the 200 queries, 2.4 standard errors of the difference
    assert acc["moco"] > acc["simmim"], acc
