"""A saved probe read back by ``classifier(model, probe_path)`` gives the probe's own logits."""

from __future__ import annotations

import pytest
import torch

from vitscope.data import model_transform
from vitscope.eval.features import extract_features
from vitscope.eval.labelled import open_labelled
from vitscope.eval.linear_probe import LayerwiseLinearProbe, ProbeTraining, probe_file, save_probe, train_probe
from vitscope.eval.probe_run import parse_probe_target
from vitscope.models.classifier import classifier


@pytest.mark.parametrize("feature,layer", [("pooled", -1), ("cls", 1), ("gap_noprefix", 2)])
@torch.no_grad()
def test_save_then_classifier_gives_same_logits(tiny_vit, class_folders, tmp_path, feature, layer,
                                                manual_block_outputs, stacked_images):
    data = open_labelled(str(class_folders[0]), model_transform(tiny_vit))
    feats = extract_features(tiny_vit, data, ("cls", "gap_noprefix"), device="cpu", workers=0)
    x = feats.pooled[:, None] if feature == "pooled" else feats.blocks[feature]
    torch.manual_seed(0)
    probe = LayerwiseLinearProbe(x.shape[1], x.shape[2], 2)
    with torch.enable_grad():
        train_probe(probe, x, feats.labels, ProbeTraining(epochs=2, batch_size=8))
    index = 0 if feature == "pooled" else layer
    save_probe(tmp_path / "probe.pt", probe_file(probe, index, model_spec="random:tiny", feature=feature,
                                                 model_layer=layer, classes=["dark", "light"]))

    clf, classes = classifier(tiny_vit, tmp_path / "probe.pt")
    assert classes == ["dark", "light"]
    images = stacked_images(data)
    logits = clf(images)

    outs = manual_block_outputs(tiny_vit, images)
    if feature == "pooled":
        f = tiny_vit.forward_head(tiny_vit.norm(outs[-1]), pre_logits=True)
    elif feature == "cls":
        f = outs[layer][:, 0]
    else:
        f = outs[layer][:, 1:].mean(1)
    expected = probe.eval()(f[:, None].expand(-1, x.shape[1], -1).contiguous())[:, index]
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_probe_target_parsing():
    kinds = ("cls", "gap")
    assert parse_probe_target("pooled", kinds, 12) == ("pooled", -1)
    assert parse_probe_target("cls:11", kinds, 12) == ("cls", 11)
    assert parse_probe_target("gap:-1", kinds, 12) == ("gap", 11)
    from vitscope.errors import VitscopeError
    for bad in ("gap_noprefix:3", "cls:12", "cls", "gap:x"):
        with pytest.raises(VitscopeError, match="--save-probe"):
            parse_probe_target(bad, kinds, 12)
