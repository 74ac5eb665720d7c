"""``inspect``: the papers' single-image figures for one model, plus the attention explorer.

Two forward passes over a handful of images, both through ``capture.Taps``:

1. the *map images* (the first ``maps``, and the explorer's): attention of every block,
   the residual stream before/after self-attention (``block_in``/``attn_res``) and leaving each
   block (``block_out``, for the token norm maps);
2. the *t-SNE images* (up to 18, from up to 3 classes): ``block_out`` of one block.

Returns the ``inspect.json`` entries and the files (figures, ``explorer.html``) by name;
:func:`write_inspect` writes them atomically. The per-head NMI KDE reads analysis results only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from vitscope.data.transforms import model_data_config
from vitscope.errors import VitscopeError
from vitscope.metrics.attention import (attention_distance, attention_nmi, grid_distances, patch_attention,
                                        window_attention_map)
from vitscope.metrics.norms import OUTLIER_RULE, outlier_mask, token_norms
from vitscope.models.loader import spec_of
from vitscope.reporting.explorer import ExplorerImage, explorer_page
from vitscope.reporting.plots import detached, save_figure
from vitscope.results import INSPECT, ensure_dir, provenance, write_atomic, write_results
from vitscope.taps import vit_info
from vitscope.views import figures
from vitscope.views.collect import MAX_TSNE_IMAGES, Images, collect
from vitscope.views.pure import (default_queries, parse_query, pca_before_after, quantise_rows,
                                 query_maps, to_pixels, tsne_2d)

EXPLORER_BUDGET = 8 * 2**20  # bytes of uint8 attention the explorer may embed
#: What ``inspect.json`` says of CaiT's class-attention blocks, which it does not draw.
CLASS_ATTENTION_NOTE = ("the {} class-attention blocks (CaiT) are not drawn: the class token is their only query, so they "
                        "have no query map; analyze reports their entropy (metrics.attention.class_attention)")

#: A file ``inspect`` writes: a figure (PNG), a page (HTML text), or a file already on disk (copied).
File = Figure | str | Path


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


def nmi_kde(runs: Sequence[tuple[str, dict[str, Any]]], block: int | None) -> tuple[dict[str, Any], Figure]:
    """Fig. E.1b from ``(label, analysis results)`` pairs: the per-head NMI of one block (1-based;
    None = last). Returns the ``inspect.json`` entry and the figure (``nmi_kde.png``)."""
    heads, blocks = [], []
    for label, r in runs:
        if "attention" not in r["metrics"]:
            raise VitscopeError(f"the analysis of {label} has no attention metrics; analyze with --metrics attention")
        per_head = r["metrics"]["attention"]["nmi_per_head"]
        b = resolve_block(block, len(per_head))
        blocks.append(b)
        heads.append((label, per_head[b]))
    if len(set(blocks)) > 1:
        raise VitscopeError(f"the results have different depths; name one block with --block (got {blocks})")
    entry = {"block": blocks[0] + 1, "runs": [{"label": lab, "nmi_per_head": v} for lab, v in heads],
             "kde": "scipy.stats.gaussian_kde, Scott's bandwidth", "figure": "nmi_kde.png"}
    return entry, detached(figures.nmi_kde_figure(heads, blocks[0] + 1))


def inspect_model(model: nn.Module, imgs: Images, *, queries: Sequence[str] = (), heads: bool = False,
                  block: int | None = None, maps: int = 2, explorer_images: int = 4, device: torch.device,
                  precision: str = "fp32", seed: int = 0, perplexity: float = 30.0, batch_size: int = 8,
                  progress: bool = True) -> tuple[dict[str, Any], dict[str, File]]:
    """Every model figure of ``inspect`` for ``imgs``: the ``inspect.json`` entries and the files by
    name (figures detached from pyplot, the explorer page as text).

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
    first = collect(model, imgs.tensors[:n_maps], ("attn", "block_in", "attn_res", "block_out"), device=device,
                    precision=precision, batch_size=batch_size, progress=progress)
    windows = info.window_sizes or (0,) * info.depth  # SAM: a windowed block's maps joined over the image
    attn = torch.stack([window_attention_map(a, grid, w) if w else patch_attention(a, pre)
                        for a, w in zip(first["attn"], windows)], 1)  # [B, L, H, P, P]
    files: dict[str, File] = {}

    for i in range(min(maps, n_maps)):
        per_query = torch.stack([query_maps(attn[i], q, grid, 0) for q in qs])  # [Q, L, H, h, w]
        stem = f"attention_maps_{i + 1}"
        files[f"{stem}.png"] = figures.attention_maps_figure(pixels[i], per_query.mean(2).numpy(), qs, imgs.names[i])
        norms = torch.stack([token_norms(x[i:i + 1, pre:])[0] for x in first["block_out"]])  # [L, P]
        files[f"norm_maps_{i + 1}.png"] = figures.norm_maps_figure(
            pixels[i], norms.reshape(-1, *grid).numpy(), outlier_mask(norms).reshape(-1, *grid).numpy(), imgs.names[i])
        if heads:
            for j, q in enumerate(qs):
                files[f"{stem}_heads_q{j + 1}.png"] = figures.head_maps_figure(pixels[i], per_query[j].numpy(), q,
                                                                               imgs.names[i])

    two = min(2, n_maps)
    before = first["block_in"][b][:two, pre:].numpy()
    after = first["attn_res"][b][:two, pre:].numpy()
    pb, pa, explained = pca_before_after(before, after)
    files["tokens_before_after.png"] = figures.tokens_figure(pb, pa, imgs.names[:two], b + 1, explained)
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
    files["tsne.png"] = figures.tsne_figure(emb, image_of_token, imgs.classes[:n_tsne], b + 1, perp)
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
    files["explorer.html"] = page = explorer_page(pages, grid=grid, patch_size=info.patch_size, model=spec_of(model))
    explorer = {"file": "explorer.html", "bytes": len(page.encode()), "images": imgs.names[:n_explore],
                "per_head_maps": with_heads,
                "attention_bytes": int(sum(p.attention.nbytes for p in pages)),
                "quantisation": "uint8, each attention row scaled to its own maximum (stored as float32 beside it)",
                "mean_slot": "the last head slot is the mean attention map over heads, shown with the mean "
                             "over heads of the per-head NMI and distance (as analyze reports them)"}
    return {"grid": list(grid), "patch_size": list(info.patch_size), "depth": info.depth, "heads": info.num_heads,
            "queries": [list(q) for q in qs], "attention_maps": {"images": imgs.names[:min(maps, n_maps)],
            "per_head": heads, "average": "mean over heads of the patch attention (prefix tokens dropped, rows "
            "renormalised)"}, "norm_maps": {"images": imgs.names[:min(maps, n_maps)], "tokens": "patch tokens leaving "
            "each block (tap block_out)", "outliers": OUTLIER_RULE},
            "tokens_before_after": tokens, "tsne": tsne, "explorer": explorer,
            **({"class_attention": CLASS_ATTENTION_NOTE.format(info.class_attention_depth)}
               if info.class_attention_depth else {}),
            "files": list(files)}, {name: detached(f) if isinstance(f, Figure) else f for name, f in files.items()}


def inspect_record(entries: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The content of ``inspect.json``: kind, provenance (``fields``, versions, time) and ``entries``."""
    return {"kind": INSPECT, **provenance(**fields), **entries}


def write_inspect(out: Path, record: dict[str, Any], files: Mapping[str, File]) -> Path:
    """``files`` (figures as PNG, pages as HTML, files on disk copied) and ``out/inspect.json``, atomically."""
    ensure_dir(out)
    for name, f in files.items():
        if isinstance(f, Figure):
            save_figure(f, out / name)
        elif isinstance(f, Path):
            if f.resolve() != (out / name).resolve():
                write_atomic(out / name, f.read_bytes())
        else:
            write_atomic(out / name, f.encode())
    write_results(out / "inspect.json", record)
    return out / "inspect.json"
