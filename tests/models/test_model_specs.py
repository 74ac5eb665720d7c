"""Spec grammar and the ``timm:`` / ``random:`` sources of :func:`vitscope.models.load`."""

from __future__ import annotations

import pytest
import timm
import torch
from huggingface_hub.utils import LocalEntryNotFoundError
from vit_factories import images

from vitscope.errors import VitscopeError
from vitscope.models import SUPPORTED_SPECS, load, parse_spec


def test_parse_spec(tmp_path):
    path = tmp_path / "ckpt.pth"
    path.touch()
    assert (parse_spec("timm:vit_base_patch16_224.mae").source, parse_spec("hf:org/repo").target) == ("timm", "org/repo")
    spec = parse_spec(f"{path}@vit_small_patch16_224")
    assert (spec.source, spec.target, spec.arch) == ("file", str(path), "vit_small_patch16_224")
    assert parse_spec(str(path)).arch is None
    with pytest.raises(VitscopeError, match="names no model"):
        parse_spec("hf:")


def test_supported_specs_name_every_format():
    for name in ("MoCo v3", "SimMIM", "MAE", "DINO", "BEiT", "safetensors", "vitscope", "hf:", "timm:", "random:"):
        assert name in SUPPORTED_SPECS


def test_random_weights_are_seeded():
    a, b, c = load("random:test_vit"), load("random:test_vit"), load("random:test_vit", seed=1)
    x = images(size=160)
    with torch.no_grad():
        assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))
    assert a.vitscope_spec == "random:test_vit" and not a.training


def one_line_error(spec: str, match: str) -> None:
    with pytest.raises(VitscopeError, match=match) as info:
        load(spec)
    assert "\n" not in str(info.value)


def test_unknown_timm_name():
    one_line_error("timm:vit_no_such_model_patch3", "timm has no model 'vit_no_such_model_patch3'")


def test_pretrained_download_failure_is_one_line(monkeypatch):
    def offline(name, pretrained=False, **kwargs):
        assert pretrained
        raise LocalEntryNotFoundError(
            "An error happened while trying to locate the file on the Hub and we cannot find the requested "
            "files in the local cache. Please check your connection and try again.\nmore details")

    monkeypatch.setattr(timm, "create_model", offline)
    one_line_error("timm:vit_small_patch16_224.dino", r"could not create timm model 'vit_small_patch16_224\.dino'")


def test_non_vit_timm_model():
    one_line_error("random:resnet10t", "not a Vision Transformer")
