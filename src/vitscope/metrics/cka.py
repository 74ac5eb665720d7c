"""Minibatch linear CKA with the unbiased HSIC estimator (Shekhar et al., App. A, eq. 3–4).

For a minibatch of ``n`` images with features ``X_i ∈ R^{n×p1}``, ``Y_i ∈ R^{n×p2}`` and
linear Gram matrices ``K = X_i X_iᵀ``, ``L = Y_i Y_iᵀ`` (``K̃``, ``L̃``: diagonal set to 0)::

    HSIC_1(K, L) = 1/(n(n-3)) · [ tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n-1)(n-2)) − 2/(n-2) · 1ᵀK̃L̃1 ]   (eq. 4)

    CKA_minibatch = Σ_i HSIC_1(K_i, L_i) / sqrt(Σ_i HSIC_1(K_i, K_i) · Σ_i HSIC_1(L_i, L_i))   (eq. 3)

(the ``1/k`` of eq. 3 cancels). ``HSIC_1`` is unbiased, so its sum over minibatches
estimates the same quantity whatever the batch size, and the ratio is taken once, at
the end (Nguyen, Raghu & Kornblith 2021). The estimator is invariant to a shared offset
of the features, so features are centred over the batch before the Gram matrix is
formed, in float64: the raw formula in float32 on features with a large common offset
loses every significant digit (CKA 1.0 or NaN instead of 0.63).

Gram matrices are over *images*: activations ``[B, T, D]`` are flattened to
``[B, T·D]`` (:func:`vitscope.metrics.tokens.reduce_tokens` picks CLS / GAP instead), never treated as ``B·T``
samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist


def centered_gram(x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``[..., n, F]`` → ``[..., n, n]``: ``K = X̄ X̄ᵀ`` with ``X̄ = X − 1 x̄ᵀ`` centred over the batch.

    Computed in ``dtype`` (float64 by default). Centring leaves :func:`unbiased_hsic`
    unchanged and keeps large shared offsets from swamping the float range.
    """
    x = x.to(dtype)
    x = x - x.mean(-2, keepdim=True)
    return x @ x.transpose(-1, -2)


def unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Eq. 4 for every pair of Gram matrices: ``k [Lk, n, n]``, ``l [Ll, n, n]`` → ``[Lk, Ll]``.

    All pairs at once: ``tr(K̃L̃)`` is a dot product of the flattened matrices, and
    ``1ᵀK̃L̃1`` a dot product of their row sums, so each term is one matrix product.
    """
    n = k.shape[-1]
    if n < 4:
        raise ValueError(f"the unbiased HSIC estimator needs at least 4 images per batch, got {n}")
    if l.shape[-1] != n:
        raise ValueError(f"Gram matrices over different batches: {n} vs {l.shape[-1]} images")
    kt = k - torch.diag_embed(torch.diagonal(k, dim1=-2, dim2=-1))
    lt = l - torch.diag_embed(torch.diagonal(l, dim1=-2, dim2=-1))
    trace = kt.flatten(-2) @ lt.flatten(-2).transpose(-1, -2)
    rk, rl = kt.sum(-1), lt.sum(-1)
    total = torch.outer(rk.sum(-1), rl.sum(-1))
    cross = rk @ rl.transpose(-1, -2)
    return (trace + total / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * cross) / (n * (n - 3))


def cka_from_hsic(hsic_xy: torch.Tensor, hsic_xx: torch.Tensor, hsic_yy: torch.Tensor) -> torch.Tensor:
    """``CKA = HSIC(X,Y) / sqrt(HSIC(X,X)·HSIC(Y,Y))`` for ``[Lx, Ly]``, ``[Lx]``, ``[Ly]`` sums."""
    return hsic_xy / torch.sqrt(torch.outer(hsic_xx, hsic_yy))


def _grams(features: torch.Tensor | Sequence[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """Per-layer activations (``[L, n, ...]`` or a list of ``[n, ...]``) → ``[L, n, n]``."""
    if isinstance(features, torch.Tensor):
        return centered_gram(features.flatten(2), dtype)
    return torch.stack([centered_gram(f.flatten(1), dtype) for f in features])


class MinibatchCKA:
    """Streaming CKA matrix between the ``layers_x`` layers of one model and the ``layers_y`` of another.

    torchmetrics-style: :meth:`update` per minibatch, :meth:`compute` once; the states
    are float64 sums (HSIC terms, batch and image counts) of fixed size ``O(Lx·Ly)``,
    whatever the number of images, and :meth:`compute` sums them over all processes
    when ``torch.distributed`` is initialised.

    >>> cka = MinibatchCKA(12, 12)
    >>> for x, y in batches:          # per-layer features, [L, n, ...] or list of [n, ...]
    ...     cka.update(x, y)
    >>> cka.compute()                 # [12, 12]
    """

    def __init__(self, layers_x: int, layers_y: int | None = None, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float64) -> None:
        self.layers_x = layers_x
        self.layers_y = layers_x if layers_y is None else layers_y
        self.device = torch.device(device)
        self.dtype = dtype
        self.reset()

    def reset(self) -> None:
        z = dict(dtype=torch.float64, device=self.device)
        self.hsic_xy = torch.zeros(self.layers_x, self.layers_y, **z)
        self.hsic_xx = torch.zeros(self.layers_x, **z)
        self.hsic_yy = torch.zeros(self.layers_y, **z)
        self.batches = torch.zeros((), **z)
        self.images = torch.zeros((), **z)

    def states(self) -> dict[str, torch.Tensor]:
        return {"hsic_xy": self.hsic_xy, "hsic_xx": self.hsic_xx, "hsic_yy": self.hsic_yy,
                "batches": self.batches, "images": self.images}

    def update(self, x: torch.Tensor | Sequence[torch.Tensor],
               y: torch.Tensor | Sequence[torch.Tensor] | None = None) -> None:
        """Add one minibatch: per-layer features of the same ``n`` images (``y=None``: ``x`` against itself).

        A layer's features may be ``[n, F]`` or ``[n, T, D]`` (flattened to ``[n, T·D]``).
        """
        kx = _grams(x, self.dtype)
        self.update_grams(kx, None if y is None else _grams(y, self.dtype))

    def update_grams(self, kx: torch.Tensor, ky: torch.Tensor | None = None) -> None:
        """Add one minibatch given its Gram matrices ``[Lx, n, n]`` and ``[Ly, n, n]`` (see :func:`centered_gram`)."""
        ky_ = kx if ky is None else ky
        if kx.shape[0] != self.layers_x or ky_.shape[0] != self.layers_y:
            raise ValueError(f"expected {self.layers_x} and {self.layers_y} layers, "
                             f"got {kx.shape[0]} and {ky_.shape[0]}")
        kx, ky_ = kx.to(self.device, torch.float64), ky_.to(self.device, torch.float64)
        hxy = unbiased_hsic(kx, ky_)
        self.hsic_xy += hxy
        self.hsic_xx += torch.diagonal(hxy) if ky is None else torch.diagonal(unbiased_hsic(kx, kx))
        self.hsic_yy += torch.diagonal(hxy) if ky is None else torch.diagonal(unbiased_hsic(ky_, ky_))
        self.batches += 1
        self.images += kx.shape[-1]

    def synced_states(self) -> dict[str, torch.Tensor]:
        """The states summed over every process of the default group (copies; a no-op copy alone)."""
        out = {k: v.clone() for k, v in self.states().items()}
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for t in out.values():
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return out

    def compute(self) -> torch.Tensor:
        """The ``[Lx, Ly]`` CKA matrix (eq. 3) over every minibatch seen, on every process."""
        s = self.synced_states()
        if s["batches"].item() == 0:
            raise ValueError("MinibatchCKA.compute() called before any update()")
        return cka_from_hsic(s["hsic_xy"], s["hsic_xx"], s["hsic_yy"])
