"""Every model source becomes a timm ViT with known weights: :func:`load`."""

from vitscope.models import small  # noqa: F401  (registers the small-image ViTs with timm)
from vitscope.models.load import SUPPORTED_SPECS, load, parse_spec

__all__ = ["SUPPORTED_SPECS", "load", "parse_spec"]
