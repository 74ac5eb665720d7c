"""``hf:`` checkpoints: small HF models saved with ``save_pretrained`` load as equal timm ViTs."""

from __future__ import annotations

import json

import pytest
import torch
from vit_factories import IMG, images, randomize

from vitscope.errors import VitscopeError
from vitscope.models import load

transformers = pytest.importorskip("transformers")

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=IMG, patch_size=8)


def saved(model, tmp_path, name: str = "repo") -> str:
    """``save_pretrained`` a randomised HF model; its directory is the ``hf:`` target."""
    randomize(model)
    path = tmp_path / name
    model.save_pretrained(path)
    return str(path)


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), f"max diff {(a - b).abs().max()}"


def test_vit_model_hidden_states(tmp_path):
    hf = transformers.ViTModel(transformers.ViTConfig(**SMALL, intermediate_size=96))
    timm_model = load("hf:" + saved(hf, tmp_path))
    x = images()
    with torch.no_grad():
        close(timm_model.forward_features(x), hf(pixel_values=x).last_hidden_state)
    assert timm_model.num_classes == 0


def test_vit_classifier_logits(tmp_path):
    hf = transformers.ViTForImageClassification(transformers.ViTConfig(**SMALL, intermediate_size=128, num_labels=5))
    timm_model = load("hf:" + saved(hf, tmp_path))
    x = images()
    with torch.no_grad():
        close(timm_model(x), hf(pixel_values=x).logits)


def test_vit_mae_encoder(tmp_path):
    config = transformers.ViTMAEConfig(**SMALL, intermediate_size=128, mask_ratio=0.0, decoder_hidden_size=32,
                                       decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                       decoder_intermediate_size=64)
    hf = transformers.ViTMAEForPreTraining(config)
    timm_model = load("hf:" + saved(hf, tmp_path))
    x = images()
    patches = (IMG // 8) ** 2
    noise = torch.arange(patches, dtype=torch.float).expand(len(x), patches)  # keeps patch order
    with torch.no_grad():
        close(timm_model.forward_features(x), hf.vit(pixel_values=x, noise=noise).last_hidden_state)


def test_dinov2_layer_scale(tmp_path):
    hf = transformers.Dinov2Model(transformers.Dinov2Config(**SMALL, mlp_ratio=2))
    timm_model = load("hf:" + saved(hf, tmp_path))
    x = images()
    with torch.no_grad():
        close(timm_model.forward_features(x), hf(pixel_values=x).last_hidden_state)


def test_dinov2_swiglu(tmp_path):
    hf = transformers.Dinov2Model(transformers.Dinov2Config(**SMALL, use_swiglu_ffn=True))
    timm_model = load("hf:" + saved(hf, tmp_path))
    x = images()
    with torch.no_grad():
        close(timm_model.forward_features(x), hf(pixel_values=x).last_hidden_state)


def test_dinov2_with_registers(tmp_path):
    hf = transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(**SMALL, num_register_tokens=4))
    timm_model = load("hf:" + saved(hf, tmp_path))
    assert timm_model.num_prefix_tokens == 5
    x = images()
    with torch.no_grad():
        close(timm_model.forward_features(x), hf(pixel_values=x).last_hidden_state)


def test_preprocessor_mean_std(tmp_path):
    repo = saved(transformers.ViTModel(transformers.ViTConfig(**SMALL)), tmp_path)
    (tmp_path / "repo" / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}))
    model = load("hf:" + repo)
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5) and model.pretrained_cfg["std"] == (0.25, 0.25, 0.25)
    assert model.pretrained_cfg["input_size"] == (3, IMG, IMG)


def one_line_error(spec: str, match: str) -> None:
    with pytest.raises(VitscopeError, match=match) as info:
        load(spec)
    assert "\n" not in str(info.value)


def test_dinov2_classifier_has_no_timm_equivalent(tmp_path):
    hf = transformers.Dinov2ForImageClassification(transformers.Dinov2Config(**SMALL, num_labels=3))
    one_line_error("hf:" + saved(hf, tmp_path), "no timm equivalent")


def test_unsupported_model_type(tmp_path):
    hf = transformers.DeiTModel(transformers.DeiTConfig(**SMALL))
    one_line_error("hf:" + saved(hf, tmp_path), r"'deit' is not supported. Valid options are")


def test_missing_weight_is_an_error(tmp_path):
    repo = saved(transformers.ViTModel(transformers.ViTConfig(**SMALL)), tmp_path)
    from safetensors.torch import load_file, save_file

    weights = tmp_path / "repo" / "model.safetensors"
    state = load_file(weights)
    del state["encoder.layer.1.output.dense.bias"]
    save_file(state, weights)
    one_line_error("hf:" + repo, r"missing keys: blocks\.1\.mlp\.fc2\.bias")


def test_hub_unreachable_is_one_line(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    import vitscope.models.hf as hf_module

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub and we "
                                      "cannot find the requested files in the local cache.\nCheck your connection")

    monkeypatch.setattr(hf_module, "hf_hub_download", offline)
    one_line_error("hf:facebook/dinov2-small", "could not fetch 'config.json' of HF repo 'facebook/dinov2-small'")


def test_invalid_repo_id():
    one_line_error("hf:not a repo//id", "neither a local directory nor a valid HF repo id")
