"""Every model source becomes a timm ViT with known weights: :func:`load`."""

from vitscope.models import small  # noqa: F401  (registers the small-image ViTs with timm)
from vitscope.models.loader import SUPPORTED_SPECS, as_vit, load, parse_spec, spec_of

__all__ = ["SUPPORTED_SPECS", "as_vit", "load", "parse_spec", "spec_of"]
