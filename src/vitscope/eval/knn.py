"""Weighted k-nearest-neighbour classification (InstDisc / DINO ``eval_knn``).

For a query ``q`` and training features ``x_i`` (both L2-normalised), the ``k`` training
points with the largest cosine similarity ``s_i = q·x_i`` vote for their class with weight
``exp(s_i / T)``; the predicted class is the one with the largest summed weight:

    score_c(q) = Σ_{i ∈ top-k(q)} exp(s_i / T) · [y_i = c]

``k = 20``, ``T = 0.07`` as in DINO (Caron et al. 2021) and Wu et al. (2018). Shekhar et
al. Fig. 3 reports this 20-NN accuracy after every block on CLS, GAP and GAP-without-CLS
features. The training set is the reference bank; queries come from a separate set, so
no point is excluded from its own neighbours.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vitscope.choices import KNN_K, KNN_TEMPERATURE



def knn_scores(train: torch.Tensor, train_labels: torch.Tensor, queries: torch.Tensor, num_classes: int,
               k: int = KNN_K, temperature: float = KNN_TEMPERATURE, chunk: int = 1024) -> torch.Tensor:
    """Class scores ``[Q, C]`` of ``queries`` ``[Q, D]`` against the bank ``train`` ``[N, D]``.

    ``k`` is capped at ``N``. Queries are processed ``chunk`` at a time so memory is
    ``chunk × N``.
    """
    if k < 1 or temperature <= 0:
        raise ValueError(f"k must be ≥ 1 and temperature > 0, got k={k}, T={temperature}")
    bank = F.normalize(train.float(), dim=1)
    labels = train_labels.long().to(bank.device)
    k = min(k, bank.shape[0])
    out = []
    for start in range(0, queries.shape[0], chunk):
        q = F.normalize(queries[start:start + chunk].float().to(bank.device), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        scores = torch.zeros(q.shape[0], num_classes, device=bank.device, dtype=weights.dtype)
        out.append(scores.scatter_add_(1, labels[idx], weights))
    return torch.cat(out)


def knn_accuracy(train: torch.Tensor, train_labels: torch.Tensor, queries: torch.Tensor,
                 query_labels: torch.Tensor, num_classes: int, k: int = KNN_K,
                 temperature: float = KNN_TEMPERATURE) -> float:
    """Top-1 accuracy of :func:`knn_scores` predictions."""
    pred = knn_scores(train, train_labels, queries, num_classes, k, temperature).argmax(1)
    return float((pred.cpu() == query_labels.cpu().long()).float().mean())


def knn_accuracy_per_block(train: np.ndarray, train_labels: np.ndarray, queries: np.ndarray,
                           query_labels: np.ndarray, num_classes: int, k: int = KNN_K,
                           temperature: float = KNN_TEMPERATURE,
                           device: torch.device | str = "cpu") -> np.ndarray:
    """k-NN accuracy ``[L]`` of every block: ``train`` ``[N, L, D]``, ``queries`` ``[Q, L, D]``."""
    ytr, yq = torch.as_tensor(np.asarray(train_labels)), torch.as_tensor(np.asarray(query_labels))
    acc = [
        knn_accuracy(torch.from_numpy(np.array(train[:, layer], dtype=np.float32)).to(device), ytr,
                     torch.from_numpy(np.array(queries[:, layer], dtype=np.float32)).to(device), yq,
                     num_classes, k, temperature)
        for layer in range(train.shape[1])
    ]
    return np.asarray(acc)
