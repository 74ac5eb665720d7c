"""Taps → per-layer centred Gram matrices, one minibatch at a time, for each layer type.

Layer types (Shekhar et al. Fig. 1, 2, 5, 6):

============  ===========================================  =====================
layer type    tensor                                       taps used
============  ===========================================  =====================
``block``     block output (residual stream)               ``block_out``
``qkv``       attention query/key/value projection (MHSA)  ``qkv``
``ln1``       LayerNorm before attention (LayerNorm-1)     ``ln1``
``fc1``       first MLP linear layer (MLP-FC-1)            ``fc1``
``attn_out``  attention branch output added to the         ``attn_res − block_in``
              residual stream (after ``proj`` and layer
              scale, when the model has one)
============  ===========================================  =====================

Each captured tensor is reduced to per-image features and turned into its ``[n, n]``
Gram matrix in the tap callback, so at most one layer's activations exist at a time
(``block_in`` is kept until the same block's ``attn_res`` arrives).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vitscope.choices import LAYER_TYPES
from vitscope.metrics.cka import centered_gram
from vitscope.metrics.tokens import reduce_tokens

_TAP_TYPE = {"block_out": "block", "qkv": "qkv", "ln1": "ln1", "fc1": "fc1", "attn_res": "attn_out"}


class GramCollector:
    """Tap callback: ``(layer, tap, tensor)`` → centred Gram matrix of that layer type and layer.

    After a forward pass, :meth:`take` returns ``{layer_type: [depth, n, n]}`` and clears.
    """

    def __init__(self, depth: int, layer_types: Sequence[str], token_reduction: str, num_prefix_tokens: int,
                 dtype: torch.dtype = torch.float64) -> None:
        unknown = set(layer_types) - set(LAYER_TYPES)
        if unknown:
            raise ValueError(f"unknown layer types {sorted(unknown)}. Valid options are: {list(LAYER_TYPES)}")
        self.depth = depth
        self.layer_types = tuple(layer_types)
        self.token_reduction = token_reduction
        self.num_prefix_tokens = num_prefix_tokens
        self.dtype = dtype
        self._grams: dict[str, dict[int, torch.Tensor]] = {t: {} for t in self.layer_types}
        self._block_in: dict[int, torch.Tensor] = {}

    @property
    def taps(self) -> frozenset[str]:
        return frozenset(tap for t in self.layer_types for tap in LAYER_TYPES[t])

    def __call__(self, layer: int, tap: str, x: torch.Tensor) -> None:
        if tap == "block_in":
            self._block_in[layer] = x
            return
        if tap == "attn_res":
            x = x.float() - self._block_in.pop(layer).float()
        kind = _TAP_TYPE[tap]
        if kind in self._grams:
            feats = reduce_tokens(x, self.token_reduction, self.num_prefix_tokens)
            self._grams[kind][layer] = centered_gram(feats, self.dtype)

    def take(self) -> dict[str, torch.Tensor]:
        """``{layer_type: [depth, n, n]}`` for the last forward pass; resets for the next."""
        out = {t: torch.stack([g[i] for i in range(self.depth)]) for t, g in self._grams.items()}
        self._grams = {t: {} for t in self.layer_types}
        self._block_in.clear()
        return out
