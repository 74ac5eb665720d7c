"""Minibatch CKA against its definition, Kornblith's debiased CKA, and the known traps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitscope.metrics.cka import (
    MinibatchCKA,
    centered_gram,
    cka_from_hsic,
    unbiased_hsic,
)
from vitscope.metrics.tokens import reduce_tokens


# -- a plain float64 reference: Kornblith et al.'s debiased feature-space CKA ------------------
def _debiased_dot(xty, rows_x, rows_y, norm_x, norm_y, n):
    return xty - n / (n - 2.0) * rows_x.dot(rows_y) + norm_x * norm_y / ((n - 1) * (n - 2))


def _kornblith_terms(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """n(n-3)·HSIC_1 of (X,Y), (X,X), (Y,Y), as in Kornblith's ``feature_space_linear_cka(debiased=True)``."""
    x = x - x.mean(0, keepdims=True)
    y = y - y.mean(0, keepdims=True)
    n = x.shape[0]
    rx, ry = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    nx, ny = rx.sum(), ry.sum()
    xy = _debiased_dot(np.linalg.norm(x.T @ y) ** 2, rx, ry, nx, ny, n)
    xx = _debiased_dot(np.linalg.norm(x.T @ x) ** 2, rx, rx, nx, nx, n)
    yy = _debiased_dot(np.linalg.norm(y.T @ y) ** 2, ry, ry, ny, ny, n)
    return xy, xx, yy


def reference_cka(x: np.ndarray, y: np.ndarray, batch: int | None = None) -> float:
    """Debiased CKA; with ``batch``, HSIC terms summed over equal minibatches before the ratio."""
    batch = batch or len(x)
    terms = np.array([_kornblith_terms(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)])
    xy, xx, yy = terms.sum(0)
    return float(xy / np.sqrt(xx * yy))


def related(n: int, d: int = 64, seed: int = 0, noise: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float64 feature sets sharing a low-rank signal."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 8, generator=g, dtype=torch.float64)
    x = z @ torch.randn(8, d, generator=g, dtype=torch.float64) + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    y = z @ torch.randn(8, d + 16, generator=g, dtype=torch.float64) + noise * torch.randn(n, d + 16, generator=g, dtype=torch.float64)
    return x, y


def cka_of(x: torch.Tensor, y: torch.Tensor, batch: int | None = None) -> float:
    acc = MinibatchCKA(1, 1)
    batch = batch or len(x)
    for i in range(0, len(x), batch):
        acc.update([x[i:i + batch]], [y[i:i + batch]])
    return float(acc.compute()[0, 0])


# -- the formula -------------------------------------------------------------------------------
def test_unbiased_hsic_matches_eq4_written_out():
    x, y = related(9, 5)
    k, l = x @ x.T, y @ y.T
    n = 9
    kt, lt = k.clone().fill_diagonal_(0), l.clone().fill_diagonal_(0)
    one = torch.ones(n, 1, dtype=torch.float64)
    expected = (torch.trace(kt @ lt) + (one.T @ kt @ one) * (one.T @ lt @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one.T @ kt @ lt @ one) / (n * (n - 3))
    assert unbiased_hsic(k[None], l[None])[0, 0].item() == pytest.approx(expected.item(), rel=1e-12)


def test_all_pairs_at_once_equal_pair_by_pair():
    xs = [related(16, 6 + i, seed=i)[0] for i in range(3)]
    ys = [related(16, 4 + i, seed=10 + i)[1] for i in range(4)]
    k = torch.stack([x @ x.T for x in xs])
    l = torch.stack([y @ y.T for y in ys])
    h = unbiased_hsic(k, l)
    assert h.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert h[i, j].item() == pytest.approx(unbiased_hsic(k[i:i + 1], l[j:j + 1]).item(), rel=1e-12)


def test_centring_does_not_change_the_unbiased_estimate():
    x, y = related(20, 7)
    raw = unbiased_hsic((x @ x.T)[None], (y @ y.T)[None])
    cen = unbiased_hsic(centered_gram(x)[None], centered_gram(y)[None])
    assert raw.item() == pytest.approx(cen.item(), rel=1e-10)


def test_too_few_images_per_batch_is_an_error():
    x = torch.randn(3, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="at least 4"):
        MinibatchCKA(1).update([x])


# -- agreement with Kornblith's debiased CKA ---------------------------------------------------
def test_full_batch_equals_kornblith_debiased_cka():
    x, y = related(200, 32)
    assert cka_of(x, y) == pytest.approx(reference_cka(x.numpy(), y.numpy()), abs=1e-6)


def test_minibatch_equals_kornblith_terms_summed_over_batches():
    x, y = related(256, 32)
    assert cka_of(x, y, 32) == pytest.approx(reference_cka(x.numpy(), y.numpy(), 32), abs=1e-6)


def test_minibatch_value_close_to_full_data_value_and_independent_of_batch_size():
    x, y = related(2048, 48, noise=2.0)
    full = reference_cka(x.numpy(), y.numpy())  # one batch of all 2048 images
    assert 0.2 < full < 0.9
    for batch in (32, 128, 512):
        assert cka_of(x, y, batch) == pytest.approx(full, abs=0.02)


# -- properties of CKA -------------------------------------------------------------------------
def test_cka_of_a_representation_with_itself_is_one():
    x, _ = related(64, 20)
    assert cka_of(x, x, 16) == pytest.approx(1.0, abs=1e-12)
    acc = MinibatchCKA(2)
    acc.update([x[:32], x[:32] ** 2])
    acc.update([x[32:], x[32:] ** 2])
    assert torch.allclose(torch.diagonal(acc.compute()), torch.ones(2, dtype=torch.float64))


def test_invariant_to_orthogonal_transform_and_isotropic_scaling():
    x, y = related(128, 24)
    q, _ = torch.linalg.qr(torch.randn(24, 24, dtype=torch.float64))
    base = cka_of(x, y, 32)
    assert cka_of(x @ q, y, 32) == pytest.approx(base, abs=1e-10)
    assert cka_of(7.5 * x, 0.01 * y, 32) == pytest.approx(base, abs=1e-10)
    assert cka_of(x @ q * 3.0 + 5.0, y, 32) == pytest.approx(base, abs=1e-10)  # offsets too


def test_not_invariant_to_a_general_invertible_linear_map():
    x, y = related(256, 24)
    a = torch.eye(24, dtype=torch.float64)
    a[:, 0] *= 30.0  # invertible, stretches one direction
    assert torch.linalg.matrix_rank(a) == 24
    assert abs(cka_of(x @ a, y, 64) - cka_of(x, y, 64)) > 0.05
    assert cka_of(x @ a, x, 64) < 0.9


# -- known traps of public implementations -----------------------------------------------------
def _naive_float32_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Eq. 4 straight on uncentred float32 Gram matrices: what falls into the offset trap."""
    k, l = (x @ x.T)[None], (y @ y.T)[None]
    return float(unbiased_hsic(k, l) / torch.sqrt(unbiased_hsic(k, k) * unbiased_hsic(l, l)))


@pytest.mark.parametrize("offset", [10.0, 100.0])
def test_large_shared_offset_in_float32_features(offset):
    x, y = related(64, 768, noise=7.0)
    x, y = x / x.std(), y / y.std()  # unit-scale 768-d features, CKA ≈ 0.65
    expected = reference_cka(x.numpy(), y.numpy())
    assert 0.6 < expected < 0.7
    x32, y32 = (x + offset).float(), (y + offset).float()
    naive = _naive_float32_cka(x32, y32)
    assert not abs(naive - expected) < 0.05  # the data does trigger the trap (or NaN) ...
    assert cka_of(x32, y32) == pytest.approx(expected, abs=1e-4)  # ... and we stay out of it


def test_batches_are_summed_not_overwritten():
    x, y = related(128, 16)
    acc = MinibatchCKA(1)
    acc.update([x[:64]], [y[:64]])
    acc.update([x[64:]], [y[64:]])
    assert int(acc.batches) == 2 and int(acc.images) == 128
    assert float(acc.compute()[0, 0]) == pytest.approx(reference_cka(x.numpy(), y.numpy(), 64), abs=1e-9)
    assert float(acc.compute()[0, 0]) != pytest.approx(cka_of(x[64:], y[64:]), abs=1e-3)


def test_hsic_terms_are_summed_not_ratios_averaged():
    x, y = related(128, 16)
    x[64:] *= 10.0  # a batch with larger features carries more HSIC
    y[64:] = torch.randn_like(y[64:])
    got = cka_of(x, y, 64)
    mean_of_ratios = (cka_of(x[:64], y[:64]) + cka_of(x[64:], y[64:])) / 2
    assert got == pytest.approx(reference_cka(x.numpy(), y.numpy(), 64), abs=1e-9)
    assert abs(got - mean_of_ratios) > 0.05


def test_gram_is_over_images_not_tokens():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 5, 6, generator=g, dtype=torch.float64)  # [B, T, D]
    y = x.flip(1) + 0.5 * torch.randn(8, 5, 6, generator=g, dtype=torch.float64)
    acc = MinibatchCKA(1)
    acc.update([x], [y])
    k = centered_gram(x.flatten(1))
    assert k.shape == (8, 8)
    expected = reference_cka(x.flatten(1).numpy(), y.flatten(1).numpy())
    assert float(acc.compute()[0, 0]) == pytest.approx(expected, abs=1e-9)
    # the same images in another order give the same CKA; shuffling one side does not
    perm = torch.randperm(8, generator=g)
    acc2 = MinibatchCKA(1)
    acc2.update([x[perm]], [y[perm]])
    assert torch.allclose(acc2.compute(), acc.compute())
    acc3 = MinibatchCKA(1)
    acc3.update([x], [y[perm]])
    assert not torch.allclose(acc3.compute(), acc.compute(), atol=1e-3)


def test_token_reductions():
    x = torch.arange(2 * 3 * 2, dtype=torch.float64).reshape(2, 3, 2)  # B=2, T=3 (1 prefix), D=2
    assert reduce_tokens(x, "flatten", 1).tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    assert reduce_tokens(x, "cls", 1).tolist() == [[0, 1], [6, 7]]
    assert reduce_tokens(x, "gap", 1).tolist() == [[2, 3], [8, 9]]
    assert reduce_tokens(x, "gap_noprefix", 1).tolist() == [[3, 4], [9, 10]]
    with pytest.raises(ValueError, match="Valid options are"):
        reduce_tokens(x, "mean", 1)
    with pytest.raises(ValueError, match="CLS"):
        reduce_tokens(x, "cls", 0)


def test_cka_from_hsic_is_the_normalised_ratio():
    h = cka_from_hsic(torch.tensor([[2.0, 1.0]]), torch.tensor([4.0]), torch.tensor([1.0, 4.0]))
    assert h.tolist() == [[1.0, 0.25]]


def test_state_size_does_not_grow_with_images():
    acc = MinibatchCKA(3, 2)
    sizes = []
    for _ in range(3):
        acc.update(torch.randn(3, 16, 10), torch.randn(2, 16, 7))
        sizes.append(sum(t.numel() for t in acc.states().values()))
    assert sizes == [sizes[0]] * 3 == [3 * 2 + 3 + 2 + 2] * 3


def _ddp_worker(rank: int, world: int, init: str, x: torch.Tensor, y: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    acc = MinibatchCKA(1)
    for i in range(rank * 32, len(x), world * 32):
        acc.update([x[i:i + 32]], [y[i:i + 32]])
    value = acc.compute()
    if rank == 0:
        torch.save(value, out)
    dist.destroy_process_group()


def test_states_all_reduce_across_processes(tmp_path):
    x, y = related(256, 16)
    out = tmp_path / "cka.pt"
    torch.multiprocessing.spawn(_ddp_worker, args=(2, f"file://{tmp_path / 'rdzv'}", x, y, str(out)), nprocs=2)
    assert float(torch.load(out)[0, 0]) == pytest.approx(cka_of(x, y, 32), abs=1e-12)
