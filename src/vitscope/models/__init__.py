"""Every model source becomes a timm ViT with known weights: :func:`load`."""

from vitscope.models.load import SUPPORTED_SPECS, load, parse_spec

__all__ = ["SUPPORTED_SPECS", "load", "parse_spec"]
