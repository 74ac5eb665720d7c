"""Per-image views (``vitscope inspect``): query attention maps, token projections, t-SNE,
per-head NMI distributions and the attention explorer page (Park et al. Figs. 2, 6, E.1b,
E.2, E.3)."""
