"""Shape-bias arithmetic, the ImageNet→16 mapping and class maps."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vitscope.errors import VitscopeError
from vitscope.perturbation.imagenet16 import IMAGENET16_CATEGORIES, IMAGENET16_INDICES
from vitscope.perturbation.shape_bias import (
    category_scores,
    decision_counts,
    imagenet16_map,
    parse_class_map,
    resolve_class_map,
    shape_bias,
)


def test_category_scores_are_mean_probabilities():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    scores = category_scores(probs, [(0, 1), (2,), (1, 2, 3)])
    assert torch.allclose(scores, torch.tensor([[0.15, 0.3, 0.3], [0.4, 0.1, 0.1]]))


def test_hand_made_decisions():
    # categories 0, 1, 2; (decision, shape, texture):
    rows = [(0, 0, 1), (0, 0, 2), (1, 0, 1),  # shape 0: 2 shape, 1 texture
            (2, 1, 2), (0, 1, 2),             # shape 1: 1 texture, 1 other
            (2, 2, 0), (2, 2, 1), (1, 2, 1)]  # shape 2: 2 shape, 1 texture
    d, s, t = (torch.tensor(c) for c in zip(*rows))
    counts = decision_counts(d, s, t, 3)
    assert counts.tolist() == [[2, 1, 0], [0, 1, 1], [2, 1, 0]]
    per_class = shape_bias(counts[:, 0], counts[:, 1])
    assert per_class.tolist() == pytest.approx([2 / 3, 0.0, 2 / 3])
    total = counts.sum(0)
    assert float(shape_bias(total[:1], total[1:2])[0]) == pytest.approx(4 / 7)  # 4 shape, 3 texture


def test_shape_bias_undefined_without_shape_or_texture_decisions():
    out = shape_bias(torch.tensor([0, 3]), torch.tensor([0, 1]))
    assert math.isnan(float(out[0])) and float(out[1]) == 0.75


def test_imagenet16_mapping_has_207_classes():
    assert len(IMAGENET16_CATEGORIES) == 16
    assert IMAGENET16_CATEGORIES == tuple(sorted(["knife", "keyboard", "elephant", "bicycle", "airplane", "clock",
                                                   "oven", "chair", "bear", "boat", "cat", "bottle", "truck",
                                                   "car", "bird", "dog"]))
    all_idx = [i for v in IMAGENET16_INDICES.values() for i in v]
    assert len(all_idx) == 207 and len(set(all_idx)) == 207 and all(0 <= i < 1000 for i in all_idx)
    assert IMAGENET16_INDICES["airplane"] == (404,) and len(IMAGENET16_INDICES["dog"]) == 109
    assert 281 in IMAGENET16_INDICES["cat"]  # tabby cat


def test_imagenet16_aggregation_is_mean_not_sum():
    cmap = imagenet16_map()
    probs = torch.zeros(1, 1000)
    probs[0, 404] = 0.3  # airplane (one class)
    probs[0, list(IMAGENET16_INDICES["dog"])] = 0.7 / 109  # more total mass on dog, spread over 109 classes
    scores = category_scores(probs, cmap.classes)
    assert cmap.categories[int(scores.argmax())] == "airplane"
    assert float(scores[0, cmap.categories.index("dog")]) == pytest.approx(0.7 / 109)
    assert float(scores[0, cmap.categories.index("cat")]) == 0.0


def test_parse_class_map_pairs_json_and_lines(tmp_path):
    js = tmp_path / "map.json"
    js.write_text(json.dumps({"boat": "ship", "car": ["automobile", "truck"]}))
    lines = tmp_path / "map.txt"
    lines.write_text("# CIFAR-10\nairplane = airplane\n\ncat=cat  # felines\n")
    got = parse_class_map(["bird=bird", str(js), str(lines), "bird=bird"])
    assert got == {"bird": ["bird"], "boat": ["ship"], "car": ["automobile", "truck"], "airplane": ["airplane"],
                   "cat": ["cat"]}


def test_parse_class_map_refuses_malformed(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("airplane=airplane\nboat ship\n")
    with pytest.raises(VitscopeError, match="line 2"):
        parse_class_map([str(bad)])
    with pytest.raises(VitscopeError, match="neither"):
        parse_class_map(["airplane"])
    with pytest.raises(VitscopeError, match="category=class"):
        parse_class_map(["airplane="])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(VitscopeError, match="not valid JSON"):
        parse_class_map([str(broken)])


def test_resolve_class_map_by_name_and_index():
    cifar = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    cmap = resolve_class_map({"car": ["automobile", "truck"], "boat": ["8"]}, ["boat", "car", "cat"], cifar, 10)
    assert cmap.categories == ("boat", "car") and cmap.classes == ((8,), (1, 9))
    with pytest.raises(VitscopeError, match="unknown cue-conflict categories"):
        resolve_class_map({"ship": ["ship"]}, ["boat", "car"], cifar, 10)
    with pytest.raises(VitscopeError, match="no such classifier class"):
        resolve_class_map({"car": ["lorry"]}, ["car"], cifar, 10)
    with pytest.raises(VitscopeError, match="0..9"):
        resolve_class_map({"car": ["12"]}, ["car"], None, 10)


def test_builtin_cifar10_map_names_the_shared_categories_by_cifar_class():
    from vitscope.perturbation.shape_bias import parse_class_map

    m = parse_class_map(["cifar10"])
    assert m == {"airplane": ["airplane"], "bird": ["bird"], "boat": ["ship"], "car": ["automobile"],
                 "cat": ["cat"], "dog": ["dog"], "truck": ["truck"]}
    assert parse_class_map(["cifar10", "car=truck"])["car"] == ["automobile", "truck"]  # pools with pairs
