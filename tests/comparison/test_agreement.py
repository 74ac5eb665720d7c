"""Kendall's τ-b against scipy, top-1 F1 against sklearn, streaming splits by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from sklearn.metrics import f1_score

from vitscope.metrics.agreement import (
    PredictionAgreement,
    kendall_tau_b,
    macro_f1,
    top1_counts,
    topk_kendall_tau,
    topk_union,
)


def test_kendall_tau_b_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (50, 12), generator=g).double()  # many ties
    y = (x + torch.randint(-2, 3, (50, 12), generator=g)).double()
    got = kendall_tau_b(x, y)
    for i in range(50):
        expected = kendalltau(x[i].numpy(), y[i].numpy()).statistic  # variant "b"
        assert got[i].item() == pytest.approx(expected, abs=1e-12)


def test_kendall_tau_b_on_a_mask_equals_scipy_on_the_kept_entries():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 9, generator=g).double(), torch.randn(20, 9, generator=g).double()
    mask = torch.rand(20, 9, generator=g) > 0.4
    mask[:, :2] = True
    got = kendall_tau_b(x, y, mask)
    for i in range(20):
        m = mask[i].numpy()
        assert got[i].item() == pytest.approx(kendalltau(x[i].numpy()[m], y[i].numpy()[m]).statistic, abs=1e-12)


def test_kendall_tau_b_is_nan_for_a_constant_row_like_scipy():
    tau = kendall_tau_b(torch.ones(1, 4, dtype=torch.float64), torch.arange(4.0, dtype=torch.float64)[None])
    assert math.isnan(tau.item()) and math.isnan(kendalltau(np.ones(4), np.arange(4.0)).statistic)


def test_hand_computed_tau():
    # x ranks a<b<c<d, y swaps the last two: 5 concordant, 1 discordant pair → τ = 4/6
    tau = kendall_tau_b(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[1.0, 2.0, 4.0, 3.0]]))
    assert tau.item() == pytest.approx(4 / 6)


def test_topk_union_keeps_each_class_once():
    a = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    b = torch.tensor([[1.0, 5.0, 2.0, 4.0, 3.0]])
    idx, keep = topk_union(a, b, 2)  # A: {0, 1}; B: {1, 3}
    assert sorted(idx[keep].tolist()) == [0, 1, 3]


def test_topk_tau_matches_scipy_on_the_union_of_top_k():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(30, 40, generator=g)
    b = a + 0.8 * torch.randn(30, 40, generator=g)
    for k in (5, 10):
        got = topk_kendall_tau(a, b, k)
        for i in range(30):
            classes = sorted(set(a[i].topk(k).indices.tolist()) | set(b[i].topk(k).indices.tolist()))
            expected = kendalltau(a[i, classes].double().numpy(), b[i, classes].double().numpy()).statistic
            assert got[i].item() == pytest.approx(expected, abs=1e-12)


def test_macro_f1_matches_sklearn_and_is_symmetric():
    g = torch.Generator().manual_seed(3)
    pa = torch.randint(0, 7, (300,), generator=g)
    pb = torch.where(torch.rand(300, generator=g) < 0.6, pa, torch.randint(0, 7, (300,), generator=g))
    pb[pb == 6] = 5  # a class only A predicts
    counts = top1_counts(pa, pb, 10)  # classes 7..9 never predicted
    assert macro_f1(counts) == pytest.approx(f1_score(pa.numpy(), pb.numpy(), average="macro"), abs=1e-12)
    assert macro_f1(counts) == pytest.approx(macro_f1(top1_counts(pb, pa, 10)), abs=1e-12)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, list):
            out.update({f"{prefix}{k}.{i}": x for i, x in enumerate(v)})
        else:
            out[prefix + k] = v
    return out


def test_streaming_agreement_equals_one_shot_and_splits_by_hand():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(40, 12, generator=g)
    b = a + torch.randn(40, 12, generator=g)
    labels = torch.randint(0, 12, (40,), generator=g)
    labels[:5] = a[:5].argmax(-1)  # some images right for A
    labels[-4:] = -1  # unlabelled
    one = PredictionAgreement(12, (5, 10, 100))
    one.update(a, b, labels)
    streamed = PredictionAgreement(12, (5, 10, 100))
    for i in range(0, 40, 7):
        streamed.update(a[i:i + 7], b[i:i + 7], labels[i:i + 7])
    r1, r2 = one.compute(), streamed.compute()
    assert _flat(r1) == pytest.approx(_flat(r2))
    assert one.ks == (5, 10, 12)  # top-100 clipped to the 12 classes
    pa, pb = a.argmax(-1), b.argmax(-1)
    known = labels >= 0
    both_ok = known & (pa == labels) & (pb == labels)
    both_bad = known & (pa != labels) & (pb != labels)
    assert r1["images"] == {"all": 40, "both_correct": int(both_ok.sum()), "both_incorrect": int(both_bad.sum())}
    tau5 = topk_kendall_tau(a, b, 5)
    assert r1["kendall_tau_b"]["all"]["top5"] == pytest.approx(tau5.mean().item())
    assert r1["kendall_tau_b"]["both_incorrect"]["top5"] == pytest.approx(tau5[both_bad].mean().item())
    assert r1["top1_agreement"] == pytest.approx((pa == pb).double().mean().item())
    assert r1["top1_f1_macro"] == pytest.approx(f1_score(pa.numpy(), pb.numpy(), average="macro"))
    assert r1["accuracy"][0] == pytest.approx(((pa == labels) & known).sum().item() / 36)
    assert r1["labelled_images"] == 36


def test_identical_models_agree_perfectly():
    a = torch.randn(16, 20)
    acc = PredictionAgreement(20)
    acc.update(a, a.clone())
    r = acc.compute()
    assert all(v == pytest.approx(1.0) for v in r["kendall_tau_b"]["all"].values())
    assert r["top1_f1_macro"] == pytest.approx(1.0) and r["top1_agreement"] == pytest.approx(1.0)
    assert r["kendall_tau_b"]["both_correct"]["top5"] is None  # no labels: the split is empty


def test_mismatched_scores_are_an_error():
    with pytest.raises(ValueError, match="scores must both be"):
        PredictionAgreement(5).update(torch.randn(3, 5), torch.randn(3, 6))
