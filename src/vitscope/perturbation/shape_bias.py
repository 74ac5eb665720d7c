"""Shape bias on cue-conflict images (Geirhos et al. 2019; Park et al. 2023 Fig. 8a, F.2).

A classifier's output classes are grouped into the stimulus categories (the 207 ImageNet
classes of :mod:`imagenet16` for 1000-way ImageNet heads, or a user class map for any
other label set, e.g. a CIFAR-10 probe). A category scores the mean softmax probability of
its classes; the decision is the best-scoring category. On an image whose shape comes from
one category and texture from another, the decision is a *shape* decision, a *texture*
decision or neither, and

    shape bias = #shape decisions / (#shape decisions + #texture decisions),

pooled over all images, and per shape category for the Fig. 8a dots.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vitscope.errors import VitscopeError
from vitscope.perturbation.imagenet16 import IMAGENET16_INDICES

IMAGENET_NUM_CLASSES = 1000


@dataclass(frozen=True)
class CategoryMap:
    """Stimulus categories (sorted) and, for each, the classifier's class indices it pools."""

    categories: tuple[str, ...]
    classes: tuple[tuple[int, ...], ...]
    source: str  # "imagenet16" or "class-map"

    def to_json(self) -> dict:
        return {"source": self.source, "map": dict(zip(self.categories, map(list, self.classes)))}


def imagenet16_map() -> CategoryMap:
    """Geirhos et al.'s WordNet mapping of 207 ImageNet-1k classes to the 16 categories."""
    cats = tuple(sorted(IMAGENET16_INDICES))
    return CategoryMap(cats, tuple(IMAGENET16_INDICES[c] for c in cats), "imagenet16")


#: The 7 of Geirhos et al.'s 16 cue-conflict categories that CIFAR-10 also has, under its class names
#: (``--class-map cifar10``); the other 9 categories (bear, bicycle, bottle, chair, clock,
#: elephant, keyboard, knife, oven) have no CIFAR-10 class, so their stimuli are dropped.
BUILTIN_MAPS: dict[str, dict[str, list[str]]] = {
    "cifar10": {"airplane": ["airplane"], "bird": ["bird"], "boat": ["ship"], "car": ["automobile"],
                "cat": ["cat"], "dog": ["dog"], "truck": ["truck"]},
}


def parse_class_map(entries: Sequence[str]) -> dict[str, list[str]]:
    """Class-map entries → ``{category: [class, ...]}``.

    Each entry is ``category=class``, the name of a built-in map (:data:`BUILTIN_MAPS`:
    ``cifar10``), or a file holding a JSON object (``{"car": "automobile", "boat": ["ship"]}``)
    or ``category=class`` lines (``#`` comments and blank lines ignored). A category given
    several times pools all its classes.
    """
    pairs: list[tuple[str, str]] = []
    for entry in entries:
        if entry in BUILTIN_MAPS:
            pairs += [(k, c) for k, v in BUILTIN_MAPS[entry].items() for c in v]
            continue
        path = Path(entry)
        if "=" not in entry and not path.is_file():
            raise VitscopeError(f"class map '{entry}' is neither a 'category=class' pair, a built-in map "
                                f"({', '.join(BUILTIN_MAPS)}) nor a file")
        if path.is_file():
            text = path.read_text()
            if text.lstrip().startswith("{"):
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as e:
                    raise VitscopeError(f"class map file {entry} is not valid JSON: {e}") from e
                for k, v in obj.items():
                    for c in (v if isinstance(v, list) else [v]):
                        pairs.append((str(k), str(c)))
                continue
            lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
            for n, ln in enumerate(lines, 1):
                if ln and "=" not in ln:
                    raise VitscopeError(f"{entry}, line {n}: expected 'category=class', got '{ln}'")
            pairs += [_pair(ln, f"{entry}") for ln in lines if ln]
        else:
            pairs.append(_pair(entry, "--class-map"))
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        out.setdefault(k, [])
        if v not in out[k]:
            out[k].append(v)
    return out


def _pair(text: str, where: str) -> tuple[str, str]:
    k, _, v = text.partition("=")
    k, v = k.strip(), v.strip()
    if not k or not v:
        raise VitscopeError(f"{where}: expected 'category=class', got '{text}'")
    return k, v


def check_map_categories(mapping: dict[str, list[str]], stimulus_categories: Sequence[str]) -> None:
    """Raise :class:`VitscopeError` if the map names a category that no stimulus has."""
    valid = sorted(set(stimulus_categories))
    unknown = sorted(set(mapping) - set(valid))
    if unknown:
        raise VitscopeError(f"class map names unknown cue-conflict categories {unknown}. Valid options are: {valid}")


def resolve_class_map(mapping: dict[str, list[str]], stimulus_categories: Sequence[str],
                      class_names: Sequence[str] | None, num_classes: int) -> CategoryMap:
    """Turn ``{category: [class name or index]}`` into a :class:`CategoryMap` for one classifier."""
    check_map_categories(mapping, stimulus_categories)
    names = list(class_names or [])
    cats = tuple(sorted(mapping))
    groups = []
    for c in cats:
        idx = []
        for target in mapping[c]:
            if target in names:
                idx.append(names.index(target))
            elif target.isdigit() and int(target) < num_classes:
                idx.append(int(target))
            else:
                hint = "" if names else " (this classifier has no class names: give output indices)"
                options = names if names else [f"0..{num_classes - 1}"]
                raise VitscopeError(f"class map '{c}={target}': no such classifier class{hint}. "
                                    f"Valid options are: {options}")
        groups.append(tuple(idx))
    return CategoryMap(cats, tuple(groups), "class-map")


def category_scores(probs: torch.Tensor, groups: Sequence[Sequence[int]]) -> torch.Tensor:
    """``[B, C]`` class probabilities → ``[B, K]``: score_k = mean_{c ∈ group k} p_c (model-vs-human)."""
    return torch.stack([probs[:, list(g)].mean(1) for g in groups], dim=1)


def decision_counts(decision: torch.Tensor, shape: torch.Tensor, texture: torch.Tensor,
                    num_categories: int) -> torch.Tensor:
    """``[K, 3]`` counts per shape category of (shape, texture, other) decisions.

    ``decision``, ``shape``, ``texture`` are ``[B]`` category indices, with ``shape ≠ texture``.
    """
    kind = torch.where(decision == shape, 0, torch.where(decision == texture, 1, 2))
    flat = shape * 3 + kind
    return torch.bincount(flat, minlength=num_categories * 3).view(num_categories, 3)


def shape_bias(shape_decisions: torch.Tensor, texture_decisions: torch.Tensor) -> torch.Tensor:
    """``shape / (shape + texture)`` elementwise; NaN where neither kind of decision occurred."""
    s, t = shape_decisions.double(), texture_decisions.double()
    total = s + t
    return torch.where(total > 0, s / total.clamp(min=1), torch.full_like(s, float("nan")))
