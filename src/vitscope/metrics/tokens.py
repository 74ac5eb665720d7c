"""Token reductions: a layer's ``[B, N, D]`` tokens → one feature vector per image.

The probes read a block through :func:`pool_tokens` (CLS, mean of all tokens, mean of the patch
tokens); CKA forms its Gram matrices over :func:`reduce_tokens` (the same, or every token and
channel flattened). Pure functions: tensor in, tensor out.
"""

from __future__ import annotations

import torch

from vitscope.choices import TOKEN_FEATURES, TOKEN_REDUCTIONS
from vitscope.errors import VitscopeError

def pool_tokens(tokens: torch.Tensor, feature: str, num_prefix_tokens: int) -> torch.Tensor:
    """``[B, N, D]`` tokens → ``[B, D]``: CLS (token 0), mean of all, or mean of patch tokens."""
    if feature == "cls":
        if num_prefix_tokens < 1:
            raise VitscopeError("feature 'cls' asked of a model without a CLS token")
        return tokens[:, 0]
    if feature == "gap":
        return tokens.mean(1)
    if feature == "gap_noprefix":
        return tokens[:, num_prefix_tokens:].mean(1)
    raise VitscopeError(f"unknown token feature '{feature}'. Valid options are: {list(TOKEN_FEATURES)}")


def reduce_tokens(x: torch.Tensor, how: str, num_prefix_tokens: int) -> torch.Tensor:
    """``[B, T, ...]`` activations → ``[B, F]`` per-image features.

    ``flatten``: all tokens and channels, ``F = T·D`` (``K = Σ_t X_t X_tᵀ``);
    ``cls``: token 0; ``gap``: mean over all tokens; ``gap_noprefix``: mean over the
    tokens after the ``num_prefix_tokens`` prefix (CLS, registers) tokens.
    """
    if how not in TOKEN_REDUCTIONS:
        raise ValueError(f"unknown token reduction '{how}'. Valid options are: {list(TOKEN_REDUCTIONS)}")
    if how == "flatten" or x.ndim == 2:
        return x.flatten(1)
    return pool_tokens(x, how, num_prefix_tokens).flatten(1)
