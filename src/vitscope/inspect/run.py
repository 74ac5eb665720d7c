"""``inspect``: the papers' single-image figures for one model, plus the attention explorer.

Two forward passes over a handful of images, both through ``capture.Taps``:

1. the *map images* (the first ``maps``, and the explorer's): attention of every block,
   and the residual stream before/after self-attention (``block_in``/``attn_res``);
2. the *t-SNE images* (up to 18, from up to 3 classes): ``block_out`` of one block.

Writes PNGs, ``explorer.html`` and ``inspect.json`` (atomically) into ``out``. The per-head
NMI KDE reads analysis ``results.json`` files only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitscope.capture import vit_info
from vitscope.data.transforms import model_data_config
from vitscope.errors import VitscopeError
from vitscope.inspect import figures
from vitscope.inspect.collect import MAX_TSNE_IMAGES, Images, collect
from vitscope.inspect.views import (default_queries, parse_query, pca_before_after, quantise_rows,
                                    query_maps, to_pixels, tsne_2d)
from vitscope.metrics.attention import attention_distance, attention_nmi, grid_distances, patch_attention
from vitscope.report.explorer import ExplorerImage, render_explorer
from vitscope.results import INSPECT, provenance, read_analysis, write_results

EXPLORER_BUDGET = 8 * 2**20  # bytes of uint8 attention the explorer may embed


def resolve_block(block: int | None, depth: int) -> int:
    """1-based ``--block`` (None = last) → 0-based index; error outside 1…depth."""
    if block is None:
        return depth - 1
    if not 1 <= block <= depth:
        raise VitscopeError(f"--block {block} is outside 1…{depth} (this model has {depth} blocks)")
    return block - 1


def explorer_plan(images: int, depth: int, heads: int, patches: int, budget: int = EXPLORER_BUDGET
                  ) -> tuple[int, bool]:
    """How many images, and whether per-head maps, fit ``budget`` bytes of ``[L, H+1, P, P]`` uint8.

    Images are dropped first (down to one), then the per-head maps (the mean is kept).
    """
    per_image = depth * (heads + 1) * patches * patches
    n = max(1, min(images, budget // per_image))
    return (n, True) if n * per_image <= budget else (1, False)


def nmi_kde(results: Sequence[Path], labels: Sequence[str], block: int | None, out: Path) -> dict[str, Any]:
    """Fig. E.1b from analysis ``results.json`` files: the per-head NMI of one block (1-based; None = last)."""
    runs, blocks = [], []
    for i, p in enumerate(results):
        r = read_analysis(p, reader="inspect")
        if "attention" not in r["metrics"]:
            raise VitscopeError(f"{p} has no attention metrics; analyze with --metrics attention")
        per_head = r["metrics"]["attention"]["nmi_per_head"]
        b = resolve_block(block, len(per_head))
        blocks.append(b)
        runs.append((labels[i] if i < len(labels) else str(r["model"].get("spec")), per_head[b]))
    if len(set(blocks)) > 1:
        raise VitscopeError(f"the results have different depths; name one block with --block (got {blocks})")
    figures.nmi_kde_figure(runs, blocks[0] + 1, out / "nmi_kde.png")
    return {"block": blocks[0] + 1, "runs": [{"label": lab, "nmi_per_head": v} for lab, v in runs],
            "kde": "scipy.stats.gaussian_kde, Scott's bandwidth", "figure": "nmi_kde.png"}


def inspect_model(model: nn.Module, imgs: Images, out: Path, *, queries: Sequence[str] = (), heads: bool = False,
                  block: int | None = None, maps: int = 2, explorer_images: int = 4, device: torch.device,
                  precision: str = "fp32", seed: int = 0, perplexity: float = 30.0, batch_size: int = 8,
                  progress: bool = True) -> dict[str, Any]:
    """Every model figure of ``inspect`` for ``imgs``; returns the ``inspect.json`` entries.

    ``batch_size`` images go through the model at a time, with a progress bar when ``progress``.
    """
    info = vit_info(model)
    grid, pre = info.grid_size, info.num_prefix_tokens
    qs = [parse_query(q, grid) for q in queries] or default_queries(grid)
    b = resolve_block(block, info.depth)
    cfg = model_data_config(model)
    pixels = to_pixels(imgs.tensors, cfg["mean"], cfg["std"])
    n_explore, with_heads = explorer_plan(min(explorer_images, len(imgs.names)), info.depth, info.num_heads,
                                          info.num_patches)
    n_maps = min(len(imgs.names), max(maps, n_explore, 2))
    first = collect(model, imgs.tensors[:n_maps], ("attn", "block_in", "attn_res"), device=device,
                    precision=precision, batch_size=batch_size, progress=progress)
    attn = torch.stack([patch_attention(a, pre) for a in first["attn"]], 1)  # [B, L, H, P, P]
    written: list[str] = []

    for i in range(min(maps, n_maps)):
        per_query = torch.stack([query_maps(attn[i], q, grid, 0) for q in qs])  # [Q, L, H, h, w]
        stem = f"attention_maps_{i + 1}"
        figures.attention_maps_figure(pixels[i], per_query.mean(2).numpy(), qs, imgs.names[i], out / f"{stem}.png")
        written.append(f"{stem}.png")
        if heads:
            for j, q in enumerate(qs):
                name = f"{stem}_heads_q{j + 1}.png"
                figures.head_maps_figure(pixels[i], per_query[j].numpy(), q, imgs.names[i], out / name)
                written.append(name)

    two = min(2, n_maps)
    before = first["block_in"][b][:two, pre:].numpy()
    after = first["attn_res"][b][:two, pre:].numpy()
    pb, pa, explained = pca_before_after(before, after)
    figures.tokens_figure(pb, pa, imgs.names[:two], b + 1, explained, out / "tokens_before_after.png")
    written.append("tokens_before_after.png")
    tokens = {"block": b + 1, "images": imgs.names[:two], "projection": "PCA (2 components) fitted to the "
              "patch tokens before and after self-attention together",
              "before": "residual stream entering the block (tap block_in)",
              "after": "x + attn(norm1(x)) (tap attn_res)", "explained_variance_ratio": explained,
              "figure": "tokens_before_after.png"}

    n_tsne = min(len(imgs.names), MAX_TSNE_IMAGES)
    out_tokens = collect(model, imgs.tensors[:n_tsne], ("block_out",), device=device, precision=precision,
                         batch_size=batch_size, progress=progress)
    feats = out_tokens["block_out"][b][:, pre:]  # [B, P, D]
    emb, perp, kl = tsne_2d(feats.reshape(-1, feats.shape[-1]).numpy(), seed, perplexity)
    image_of_token = np.repeat(np.arange(n_tsne), feats.shape[1])
    figures.tsne_figure(emb, image_of_token, imgs.classes[:n_tsne], b + 1, perp, out / "tsne.png")
    written.append("tsne.png")
    tsne = {"block": b + 1, "images": imgs.names[:n_tsne], "classes": imgs.classes[:n_tsne],
            "tokens": int(len(emb)), "tokens_from": "block output (tap block_out), patch tokens",
            "method": "sklearn.manifold.TSNE, PCA init", "perplexity": perp, "kl_divergence": kl,
            "seed": seed, "figure": "tsne.png"}

    dist = grid_distances(grid, info.patch_size).float()
    pages = []
    for i in range(n_explore):
        a = attn[i]  # [L, H, P, P]
        nmi, distance = attention_nmi(a), attention_distance(a, dist)  # [L, H]
        if with_heads:
            maps_i = torch.cat([a, a.mean(1, keepdim=True)], 1)
            nmi, distance = torch.cat([nmi, nmi.mean(1, keepdim=True)], 1), torch.cat(
                [distance, distance.mean(1, keepdim=True)], 1)
        else:
            maps_i, nmi, distance = a.mean(1, keepdim=True), nmi.mean(1, keepdim=True), distance.mean(1, keepdim=True)
        pages.append(ExplorerImage(imgs.names[i], pixels[i], *quantise_rows(maps_i), nmi.numpy(), distance.numpy()))
    spec = str(getattr(model, "vitscope_spec", None) or type(model).__name__)
    size = render_explorer(pages, grid=grid, patch_size=info.patch_size, model=spec, path=out / "explorer.html")
    written.append("explorer.html")
    explorer = {"file": "explorer.html", "bytes": size, "images": imgs.names[:n_explore], "per_head_maps": with_heads,
                "attention_bytes": int(sum(p.attention.nbytes for p in pages)),
                "quantisation": "uint8, each attention row scaled to its own maximum (stored as float32 beside it)",
                "mean_slot": "the last head slot is the mean attention map over heads, shown with the mean "
                             "over heads of the per-head NMI and distance (as analyze reports them)"}
    return {"grid": list(grid), "patch_size": list(info.patch_size), "depth": info.depth, "heads": info.num_heads,
            "queries": [list(q) for q in qs], "attention_maps": {"images": imgs.names[:min(maps, n_maps)],
            "per_head": heads, "average": "mean over heads of the patch attention (prefix tokens dropped, rows "
            "renormalised)"}, "tokens_before_after": tokens, "tsne": tsne, "explorer": explorer, "files": written}


def write_inspect(out: Path, entries: dict[str, Any], **fields: Any) -> Path:
    """``out/inspect.json`` with provenance, atomically."""
    write_results(out / "inspect.json", {"kind": INSPECT, **provenance(**fields), **entries})
    return out / "inspect.json"
