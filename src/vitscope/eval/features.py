"""Per-block features of a frozen ViT, extracted in one forward pass per image.

Every block's output (tap ``block_out``, ``[B, N, D]``) is reduced inside the hook to
one vector per feature type, so what is kept is ``[N_images, L, D]`` per type:

``cls``            the CLS token (token 0)
``gap``            mean of all tokens (prefix tokens included)
``gap_noprefix``   mean of the patch tokens only (Shekhar et al. Fig. 3 "GAP w/o CLS")

plus ``pooled``, the model's own final pooled pre-logits
(``forward_head(forward_features(x), pre_logits=True)``, final norm included), ``[N, D]``.

Features are stored as float16, in memory or, with ``cache_dir``, in ``.npy`` files
memory-mapped from disk (``numpy.lib.format.open_memmap``) next to a ``meta.json`` that
names what they were extracted from; a later call with the same key reads them back
instead of running the model again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vitscope.choices import TOKEN_FEATURES
from vitscope.data import SkipLog, iterate, make_loader
from vitscope.errors import VitscopeError
from vitscope.eval.labelled import LabelledSet
from vitscope.metrics.tokens import pool_tokens
from vitscope.models.finite import check_finite_activations
from vitscope.results import ensure_dir, write_json
from vitscope.runtime import resolve_device
from vitscope.taps import Taps, vit_info

FINAL_FEATURE = "pooled"


def parse_features(text: str, num_prefix_tokens: int) -> tuple[str, ...]:
    """``"cls,gap"`` → ``("cls", "gap")``; rejects unknown names and ``cls`` without a CLS token."""
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    bad = [k for k in kinds if k not in TOKEN_FEATURES]
    if bad or not kinds:
        raise VitscopeError(f"unknown feature type(s) {bad or [text]}. Valid options are: {list(TOKEN_FEATURES)}")
    if "cls" in kinds and num_prefix_tokens < 1:
        raise VitscopeError("feature 'cls' asked of a model without a CLS token; use gap or gap_noprefix")
    return kinds


def pool_blocks(tokens: torch.Tensor, kinds: Sequence[str], num_prefix_tokens: int) -> dict[str, torch.Tensor]:
    """One block's tokens ``[B, N, D]`` → ``{kind: [B, D]}`` (see module docstring)."""
    return {k: pool_tokens(tokens, k, num_prefix_tokens) for k in kinds}


@dataclass
class Features:
    """Frozen features of one labelled set: ``blocks[kind]`` ``[N, L, D]``, ``pooled`` ``[N, D]``."""

    blocks: dict[str, np.ndarray]
    pooled: np.ndarray
    labels: np.ndarray
    skipped: list[str]

    @property
    def num_images(self) -> int:
        return len(self.labels)


def _storage(shape: tuple[int, ...], path: Path | None) -> np.ndarray:
    if path is None:
        return np.zeros(shape, dtype=np.float16)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)


def _cached(cache_dir: Path, key: dict, kinds: Sequence[str]) -> Features | None:
    meta_path = cache_dir / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("key") != key or not set(kinds) <= set(meta.get("kinds", [])):
        return None
    n = int(meta["count"])
    blocks = {k: np.load(cache_dir / f"{k}.npy", mmap_mode="r")[:n] for k in kinds}
    return Features(blocks, np.load(cache_dir / f"{FINAL_FEATURE}.npy", mmap_mode="r")[:n],
                    np.load(cache_dir / "labels.npy")[:n], list(meta.get("skipped", [])))


@torch.no_grad()
def extract_features(
    model: nn.Module,
    data: LabelledSet,
    kinds: Sequence[str] = TOKEN_FEATURES,
    *,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    cache_dir: Path | None = None,
    cache_key: dict | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> Features:
    """Run ``model`` once over ``data`` and keep every block's pooled output (module docstring).

    Unreadable images are skipped (and listed in ``Features.skipped``); the labels kept
    are those of the images that were read.
    """
    info = vit_info(model)
    device = resolve_device(device)
    key = dict(cache_key or {}, kinds_all=list(TOKEN_FEATURES), images=len(data))
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        hit = _cached(cache_dir, key, kinds)
        if hit is not None:
            return hit
        ensure_dir(cache_dir)
        (cache_dir / "meta.json").unlink(missing_ok=True)  # invalid until complete

    n_all, depth, dim = len(data), info.depth, info.embed_dim
    path = (lambda name: cache_dir / f"{name}.npy") if cache_dir is not None else (lambda name: None)
    blocks = {k: _storage((n_all, depth, dim), path(k)) for k in kinds}
    pooled_dim = int(getattr(model, "head_hidden_size", None) or getattr(model, "num_features", dim))
    pooled = _storage((n_all, pooled_dim), path(FINAL_FEATURE))
    labels = np.zeros(n_all, dtype=np.int64)

    model = model.eval().to(device)
    batch_out: dict[str, torch.Tensor] = {}

    def on_block(layer: int, _tap: str, tokens: torch.Tensor) -> None:
        for k, v in pool_blocks(tokens, kinds, info.num_prefix_tokens).items():
            batch_out[k][:, layer] = v.float()

    skips = SkipLog()
    loader = make_loader(data.dataset, batch_size, workers=workers, pin=device.type == "cuda")
    n = 0
    with Taps(model, {"block_out"}, on_block) as taps, \
            tqdm(iterate(loader, skips), total=len(loader), disable=not progress, desc="features") as bar:
        for batch in bar:
            x = batch.images.to(device, non_blocking=True)
            b = x.shape[0]
            for k in kinds:
                batch_out[k] = torch.empty(b, depth, dim, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                final = model.forward_head(model.forward_features(x), pre_logits=True)
                check_finite_activations(model, final, lambda: model.forward_features(x))
            taps.check()
            for k in kinds:
                blocks[k][n:n + b] = batch_out[k].to("cpu", torch.float16).numpy()
            pooled[n:n + b] = final.float().to("cpu", torch.float16).numpy()
            labels[n:n + b] = batch.labels.numpy()
            n += b
    if n == 0:
        raise VitscopeError(f"no readable image in '{data.spec}' ({skips.count} unreadable)")
    feats = Features({k: v[:n] for k, v in blocks.items()}, pooled[:n], labels[:n], skips.messages)
    if cache_dir is not None:
        for arr in (*blocks.values(), pooled):
            if isinstance(arr, np.memmap):
                arr.flush()
        np.save(cache_dir / "labels.npy", labels)
        write_json(cache_dir / "meta.json", {"key": key, "kinds": list(kinds), "count": n,
                                             "skipped": skips.messages, "dtype": "float16"})
    return feats
