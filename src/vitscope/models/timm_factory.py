"""``timm.create_model`` behind one-line errors, shared by every model source."""

from __future__ import annotations

import timm
from torch import nn

from vitscope.errors import VitscopeError


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception message (library errors are often paragraphs)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def create_timm(name: str, *, pretrained: bool, **kwargs: object) -> nn.Module:
    """``timm.create_model`` with a one-line error for an unknown name, bad kwargs or failed download."""
    base = name.split(".")[0]
    if not timm.list_models(base) and base not in timm.list_models():
        raise VitscopeError(f"timm has no model '{name}' (see `timm.list_models('vit_*')`)")
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError, ValueError, TypeError, AssertionError) as e:  # hub unreachable, bad kwargs
        shown = f" with {kwargs}" if kwargs else ""
        raise VitscopeError(
            f"could not create timm model '{name}'{shown} (pretrained={pretrained}): {first_line(e)}") from e
    match_input_size(model)
    return model


def match_input_size(model: nn.Module) -> None:
    """Make the data config's ``input_size`` the size the patch embedding takes: timm keeps the
    registered size (e.g. 224) when ``img_size=`` is overridden, and preprocessing reads it."""
    cfg, embed = getattr(model, "pretrained_cfg", None), getattr(model, "patch_embed", None)
    size = getattr(embed, "img_size", None)
    channels = getattr(model, "in_chans", None)  # patch_embed.proj is no conv in a conv stem (XCiT)
    if isinstance(cfg, dict) and size is not None and tuple(cfg.get("input_size", ())[1:]) != tuple(size):
        model.pretrained_cfg = {**cfg, "input_size": (channels or embed.proj.in_channels, *size)}
