"""Images made on the spot, so the demo and the tests need no download.

Each image is a shape (disc, square, triangle, ring) filled with a texture (stripes,
checks, dots, noise) over a smooth colour gradient: low-frequency shape and
high-frequency texture vary independently, the two cues Park et al. contrast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SHAPES = ("disc", "square", "triangle", "ring")
TEXTURES = ("stripes", "checks", "dots", "noise")


def _shape_mask(shape: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    d = np.hypot(yy - cy, xx - cx)
    if shape == "disc":
        return d < r
    if shape == "ring":
        return (d < r) & (d > 0.55 * r)
    if shape == "square":
        return (np.abs(yy - cy) < 0.8 * r) & (np.abs(xx - cx) < 0.8 * r)
    if shape == "triangle":
        return (yy < cy + 0.8 * r) & (yy > cy - r + 2 * np.abs(xx - cx))
    raise ValueError(f"unknown shape '{shape}'. Valid options are: {list(SHAPES)}")


def _texture(kind: str, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    period = rng.uniform(3, 9)
    angle = rng.uniform(0, np.pi)
    if kind == "stripes":
        return 0.5 + 0.5 * np.sign(np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period))
    if kind == "checks":
        return ((np.floor(yy / period) + np.floor(xx / period)) % 2).astype(float)
    if kind == "dots":
        return (np.hypot(yy % period - period / 2, xx % period - period / 2) < period / 4).astype(float)
    if kind == "noise":
        return rng.random(yy.shape)
    raise ValueError(f"unknown texture '{kind}'. Valid options are: {list(TEXTURES)}")


def synthetic_image(shape: str, texture: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``size × size × 3`` uint8 image of ``shape`` filled with ``texture``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    c0, c1 = rng.random(3), rng.random(3)
    t = (yy * rng.uniform(-1, 1) + xx * rng.uniform(-1, 1)) / size
    background = c0 + (c1 - c0) * ((t - t.min()) / (np.ptp(t) + 1e-9))[..., None]
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    mask = _shape_mask(shape, yy, xx, cy, cx, rng.uniform(0.22, 0.35) * size)
    fg_a, fg_b = rng.random(3), rng.random(3)
    tex = _texture(texture, yy, xx, rng)[..., None]
    img = np.where(mask[..., None], fg_a * tex + fg_b * (1 - tex), background)
    return (img * 255).clip(0, 255).astype(np.uint8)


def write_synthetic_folder(root: Path, n: int, size: int = 224, seed: int = 0) -> Path:
    """Write ``n`` PNGs into ``root/<shape>/`` (an image folder with 4 shape classes)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        shape, texture = SHAPES[i % len(SHAPES)], TEXTURES[(i // len(SHAPES)) % len(TEXTURES)]
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(synthetic_image(shape, texture, size, rng)).save(folder / f"{i:05d}-{texture}.png")
    return root
