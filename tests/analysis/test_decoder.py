"""`analyze --decoder` (Park et al. Fig. 10): MAE's decoder at mask ratio 0, official and vitscope layouts."""

import argparse
import json
import sys
from functools import partial

import pytest
import timm
import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from vitscope.cli import main
from vitscope.api import analyze
from vitscope.data.synthetic import write_synthetic_folder
from vitscope.models import load
from vitscope.models.mae_decoder import load_mae_decoder

DEC_WIDTH, DEC_DEPTH = 32, 2


def randomize(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_synthetic_folder(tmp_path_factory.mktemp("dec-imgs"), 6, size=32)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """An MAE pretraining file as facebookresearch/mae main_pretrain.py saves it (tiny dims), and the
    decoder modules it was written from."""
    enc = randomize(VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=1,  # head dim 64
                                      mlp_ratio=2.0, num_classes=0), 0).eval()
    norm = partial(nn.LayerNorm, eps=1e-6)
    dec = nn.ModuleDict({
        "decoder_embed": nn.Linear(64, DEC_WIDTH),
        "decoder_blocks": nn.ModuleList([Block(DEC_WIDTH, 16, 4.0, qkv_bias=True, norm_layer=norm)
                                         for _ in range(DEC_DEPTH)]),
        "decoder_norm": norm(DEC_WIDTH), "decoder_pred": nn.Linear(DEC_WIDTH, 8 * 8 * 3)})
    randomize(dec, 1).eval()
    pos = torch.randn(1, 17, DEC_WIDTH, generator=torch.Generator().manual_seed(2))
    sd = {**enc.state_dict(), **dec.state_dict(), "mask_token": torch.zeros(1, 1, DEC_WIDTH), "decoder_pos_embed": pos}
    path = tmp_path_factory.mktemp("mae") / "checkpoint-799.pth"
    torch.save({"model": sd, "optimizer": {"state": {}, "param_groups": []}, "epoch": 799,
                "args": argparse.Namespace(model="mae_vit_base_patch16", mask_ratio=0.75)}, path)
    return path, enc, dec, pos


def test_official_decoder_is_mae_forward_decoder_without_masking(official):
    """models_mae.py forward_decoder with nothing masked: embed, + pos, blocks, norm."""
    path, enc, dec, pos = official
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = dec["decoder_embed"](enc.forward_features(x)) + pos
        for blk in dec["decoder_blocks"]:
            want = blk(want)
        want = dec["decoder_norm"](want)
        view, layout = load_mae_decoder(str(path), load(str(path)))
        got = view.forward_features(x)
    assert layout == "official MAE pretraining" and view.summary()["num_heads"] == 16
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_analyze_decoder_reports_encoder_then_decoder_blocks(official, images, tmp_path):
    path, *_ = official
    res = analyze(str(path), str(images), out=tmp_path, batch_size=3, workers=0, progress=False, decoder=True).results
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["decoder"]["depth"] == DEC_DEPTH and saved["decoder"]["num_heads"] == 16
    dec = saved["metrics"]["decoder"]
    assert set(dec) == {"attention", "similarity", "spectrum", "fourier"}
    assert len(saved["metrics"]["attention"]["nmi_per_head"]) == 2 and len(dec["attention"]["nmi_per_head"]) == 2
    assert len(dec["attention"]["nmi_per_head"][0]) == 16 and len(dec["fourier"]["delta_log_amplitude"]) == 3
    assert len(dec["spectrum"]["image_log_sv"][0]) <= DEC_WIDTH
    assert dec["attention"]["max_distance"] == pytest.approx(8 * 3 * 2 ** 0.5)  # 4×4 grid of 8 px patches
    assert res["metrics"]["attention"]["distance"] != dec["attention"]["distance"]
    for name in ("attention", "similarity", "spectrum", "fourier"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_vitscope_mae_checkpoint_decoder_matches_the_training_objective(tmp_path):
    """vitscope's own MAE: the view's tokens through decoder_pred are MAE.forward_decoder at mask ratio 0."""
    from vitscope.train import checkpoint
    from vitscope.train.config import PretrainConfig, resolve
    from vitscope.train.distributed import setup
    from vitscope.train.engine import Trainer

    cfg = resolve(PretrainConfig(method="mae", model="vit_tiny_patch4_32", device="cpu", decoder_dim=32,
                                 decoder_depth=2, decoder_heads=4,
                                 model_kwargs={"img_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2}))
    trainer = Trainer(cfg, setup("cpu"))
    randomize(trainer.objective, 4)
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, trainer.state(0, 0))
    mae = trainer.objective.eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        latent, mask, ids_restore = mae.forward_encoder.__func__(
            type("M", (), {"encoder": mae.encoder, "mask_ratio": 0.0})(), x, torch.rand(2, 16))
        want = mae.forward_decoder(latent, ids_restore)
        view, layout = load_mae_decoder(str(path), load(str(path)))
        tokens = view.forward_features(x)
        got = mae.decoder_pred(tokens[:, 1:])
    assert mask.sum() == 0 and layout == "vitscope MAE pretraining" and view.summary()["num_heads"] == 4
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_decoder_on_a_model_without_one_is_one_line(tmp_path, images, monkeypatch, capsys):
    vit = timm.create_model("vit_tiny_patch4_32", depth=1, num_classes=0)  # width 192, 3 heads: inferred
    path = tmp_path / "plain.pth"
    torch.save(vit.state_dict(), path)
    for spec in ("random:vit_tiny_patch4_32", str(path)):
        monkeypatch.setattr(sys, "argv", ["vitscope", "analyze", "--model", spec, "--data", str(images), "--out",
                                          str(tmp_path / "o"), "--decoder", "--workers", "0", "--no-progress"])
        with pytest.raises(SystemExit) as e:
            main()
        err = capsys.readouterr().err
        assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "has no MAE decoder" in err, err
