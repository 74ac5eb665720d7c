"""Weighted k-NN (DINO eval_knn): hand-computed votes, temperature weighting, no exclusions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vitscope.eval.knn import knn_accuracy, knn_accuracy_per_block, knn_scores


def unit(angle: float, scale: float = 1.0) -> list[float]:
    return [scale * math.cos(angle), scale * math.sin(angle)]


# Query along +x. Its 3 nearest neighbours by cosine: one class-1 point with similarity 0.99
# and two class-0 points with similarity 0.9; three far points (similarity ≤ cos 2) are not among them.
TRAIN = torch.tensor([
    unit(math.acos(0.99), 3.0),   # class 1, sim 0.99 (length 3: features are L2-normalised first)
    unit(math.acos(0.9)),         # class 0, sim 0.9
    unit(-math.acos(0.9), 0.5),   # class 0, sim 0.9
    unit(math.pi),                # class 0, sim -1
    unit(2.0),                    # class 1
    unit(-2.0),                   # class 1
])
LABELS = torch.tensor([1, 0, 0, 0, 1, 1])
QUERY = torch.tensor([[2.0, 0.0]])


def test_scores_match_hand_computed_votes():
    t = 0.07
    scores = knn_scores(TRAIN, LABELS, QUERY, num_classes=3, k=3, temperature=t)
    expected = torch.tensor([[2 * math.exp(0.9 / t), math.exp(0.99 / t), 0.0]])
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=0)


def test_temperature_weighting_decides_the_vote():
    # T = 0.07: exp(0.99/T) = e^14.14 > 2·e^12.86, so the single close class-1 neighbour wins;
    # T = 1: e^0.99 = 2.69 < 2·e^0.9 = 4.92, so the two class-0 neighbours win (plain majority).
    assert knn_scores(TRAIN, LABELS, QUERY, 3, k=3, temperature=0.07).argmax().item() == 1
    assert knn_scores(TRAIN, LABELS, QUERY, 3, k=3, temperature=1.0).argmax().item() == 0


def test_k_larger_than_bank_uses_every_point():
    t = 0.5
    scores = knn_scores(TRAIN, LABELS, QUERY, 2, k=50, temperature=t)
    sims = torch.nn.functional.normalize(TRAIN, dim=1) @ torch.tensor([1.0, 0.0])
    expected = torch.stack([(sims / t).exp()[LABELS == c].sum() for c in (0, 1)])[None]
    torch.testing.assert_close(scores, expected)


def test_a_query_equal_to_a_training_point_counts_it():
    # Train and validation are separate sets: nothing is excluded, an identical image is its own 1-NN.
    query = TRAIN[4:5].clone()
    assert knn_scores(TRAIN, LABELS, query, 2, k=1).argmax().item() == 1
    assert knn_accuracy(TRAIN, LABELS, TRAIN, LABELS, 2, k=1) == 1.0


def test_chunking_does_not_change_scores():
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(40, 5, generator=g), torch.randn(13, 5, generator=g)
    labels = torch.randint(0, 4, (40,), generator=g)
    torch.testing.assert_close(knn_scores(bank, labels, queries, 4, k=7, chunk=3),
                               knn_scores(bank, labels, queries, 4, k=7, chunk=1000))


def test_per_block_accuracy_reads_each_block():
    rng = np.random.default_rng(0)
    n, d = 60, 4
    y = rng.integers(0, 2, n)
    separable = np.where(y[:, None] == 1, 1.0, -1.0) * np.ones((n, d)) + 0.1 * rng.normal(size=(n, d))
    noise = rng.normal(size=(n, d))
    feats = np.stack([noise, separable], axis=1).astype(np.float16)  # [N, L=2, D]
    acc = knn_accuracy_per_block(feats[:40], y[:40], feats[40:], y[40:], 2, k=5)
    assert acc.shape == (2,)
    assert acc[1] == 1.0 and acc[0] < 0.9


def test_bad_parameters_rejected():
    with pytest.raises(ValueError, match="temperature"):
        knn_scores(TRAIN, LABELS, QUERY, 2, k=3, temperature=0.0)
