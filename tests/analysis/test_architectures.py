"""``vitscope analyze`` end to end over the timm ViT families, random weights, tiny configs.

Each family is built by ``timm.create_model`` with a small config (two blocks, mostly of width
32, on a 32–64 px image) and analysed with every metric; the values are checked against what
the definitions allow, and, with uniform attention, against values counted patch by patch.
Families vitscope cannot analyse (attention across channels, two token layouts) are refused in
one line. The table in docs/models.md lists the same families.
"""

import importlib
import json
import math

import numpy as np
import pytest
import torch

from cli_helpers import run_cli
from vitscope.api import analyze
from vitscope.data.synthetic import write_synthetic_folder
from vitscope.models.timm_factory import create_timm

TINY = dict(embed_dim=32, depth=2, num_heads=2)
VIT = dict(img_size=32, patch_size=8, **TINY)

# timm name -> (small config, prefix tokens the blocks carry)
SUPPORTED = {
    "vit_tiny_patch16_224": (VIT, 1),
    "deit_tiny_distilled_patch16_224": (VIT, 2),
    "deit3_small_patch16_224": (VIT, 1),
    "beit_base_patch16_224": (VIT, 1),
    "beitv2_base_patch16_224": (VIT, 1),
    "eva02_tiny_patch14_224": (VIT, 1),
    "vit_base_patch16_siglip_224": (VIT, 0),
    "vit_small_patch14_reg4_dinov2": (VIT, 5),
    "flexivit_small": (VIT, 1),
    "vit_base_patch32_clip_224": (VIT, 1),
    "vit_relpos_small_patch16_224": (VIT, 0),
    "vit_tiny_r_s16_p8_224": (dict(img_size=64, depth=2), 1),  # hybrid: ResNet stem of stride 32, 2×2 grid
    "cait_xxs24_224": (dict(VIT, depth_token_only=2), 0),
    # 5×5 grid, windows of 2×2 patches padded to 6×6 (9 windows), block 1 global
    "samvit_base_patch16": (dict(img_size=40, patch_size=8, **TINY, window_size=2, global_attn_indexes=(1,),
                                 neck_chans=8), 0),
}
REFUSED = {
    "xcit_tiny_12_p16_224": (dict(img_size=32, **TINY), "no token-to-token self-attention"),
    "convit_tiny": (dict(VIT, local_up_to_layer=1), "two token layouts"),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_synthetic_folder(tmp_path_factory.mktemp("imgs"), 6, size=32)


def use_tiny(monkeypatch, name: str, kwargs: dict, edit=None) -> str:
    """Make ``load`` (as ``analyze`` calls it) build the tiny ``name`` (then ``edit(model)``, if
    given); return the spec to pass."""
    spec = f"random:{name}"

    def tiny(s: str, *, seed: int = 0):
        torch.manual_seed(seed)
        model = create_timm(name, pretrained=False, **kwargs).eval()
        if edit is not None:
            edit(model)
        model.vitscope_spec = s
        return model

    monkeypatch.setattr(importlib.import_module("vitscope.models.loader"), "load", tiny)  # what as_vit calls
    return spec


def numbers(obj):
    """Every number in a JSON value (nested lists and dicts); ``None`` counts as NaN."""
    if obj is None:
        yield math.nan
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield float(obj)


@pytest.mark.parametrize("name", list(SUPPORTED))
def test_analyze_every_supported_family(name, images, tmp_path, monkeypatch):
    kwargs, prefix = SUPPORTED[name]
    spec = use_tiny(monkeypatch, name, kwargs)
    res = analyze(spec, str(images), out=tmp_path, batch_size=4, workers=0, progress=False, plots=False).results
    model, m = res["model"], res["metrics"]
    depth, heads = model["depth"], model["num_heads"]
    (gh, gw), (ph, pw) = model["grid_size"], model["patch_size"]
    assert model["num_prefix_tokens"] == prefix and depth == 2
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [gh * ph, gw * pw] == saved["data"]["preprocessing"]["input_size"][1:], "pixels per token"
    a = m["attention"]
    distance, nmi, entropy = (np.asarray(a[k]) for k in ("distance_per_head", "nmi_per_head", "entropy_per_head"))
    assert distance.shape == nmi.shape == entropy.shape == (depth, heads)
    # from the definitions: 0 ≤ d̄ ≤ the grid's diagonal; 0 ≤ NMI ≤ 1; 0 ≤ H(k|q) ≤ log P
    assert np.all(distance >= 0) and np.all(distance <= math.hypot((gh - 1) * ph, (gw - 1) * pw) * (1 + 1e-6))
    assert np.all(nmi >= 0) and np.all(nmi <= 1 + 1e-6)
    assert np.all(entropy >= 0) and np.all(entropy <= math.log(gh * gw) * (1 + 1e-6))
    for layer, window in enumerate(a.get("window_sizes", [])):  # a window's diagonal bounds its distances
        if window:
            assert np.all(distance[layer] <= math.hypot((window - 1) * ph, (window - 1) * pw) * (1 + 1e-6))
    assert len(m["fourier"]["delta_log_amplitude"]) == depth + 1 and len(m["spectrum"]["depth_labels"]) == depth + 1
    assert len(m["similarity"]["tokens_cosine"]) == depth
    for metric, result in saved["metrics"].items():
        values = list(numbers(result))
        assert values and np.isfinite(values).all(), metric
    if name.startswith("cait"):
        ca = a["class_attention"]
        assert ca["labels"] == ["class-attention block 0", "class-attention block 1"]
        ca_entropy = np.asarray(ca["entropy_per_head"])
        assert ca_entropy.shape == (2, heads) and np.all(ca_entropy >= 0)
        assert np.all(ca_entropy <= math.log(gh * gw) * (1 + 1e-6))
    if name.startswith("samvit"):
        assert saved["metrics"]["attention"]["window_sizes"] == saved["model"]["window_sizes"] == [2, 0]


@pytest.mark.parametrize("name", list(REFUSED))
def test_unsupported_families_are_refused_in_one_line(name, images, tmp_path, monkeypatch, capsys):
    kwargs, why = REFUSED[name]
    spec = use_tiny(monkeypatch, name, kwargs)
    code, out, err = run_cli(monkeypatch, capsys, "analyze", "--model", spec, "--data", str(images), "--out",
                             str(tmp_path / "r"), "--workers", "0", "--no-progress")
    assert code == 2 and why in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "results.json").exists()


def zero_scores(model) -> None:
    """Zero every query projection (and SAM's relative position tables): all attention scores of a
    row are equal, so every softmax is uniform over its keys."""
    with torch.no_grad():
        for blk in [*model.blocks, *getattr(model, "blocks_token_only", [])]:
            attn = blk.attn
            if hasattr(attn, "qkv"):
                dim = attn.qkv.weight.shape[1]
                attn.qkv.weight[:dim] = 0
                if attn.qkv.bias is not None:
                    attn.qkv.bias[:dim] = 0
            else:  # CaiT's class attention: q of the class token
                attn.q.weight.zero_()
                attn.q.bias.zero_()
            for table in ("rel_pos_h", "rel_pos_w"):
                if getattr(attn, table, None) is not None:
                    getattr(attn, table).zero_()


def uniform_values(grid: int, window: int, patch: int) -> tuple[float, float, float]:
    """Distance (px), NMI and entropy of attention uniform over each query's window-mates on a
    ``grid × grid`` grid cut into ``window × window`` windows from the top left (the last ones
    cut short by the grid's edge), by enumerating the patches; ``window = grid``: global."""
    cells = [(y, x) for y in range(grid) for x in range(grid)]
    distance = entropy = 0.0
    for y, x in cells:
        mates = [(v, u) for v, u in cells if v // window == y // window and u // window == x // window]
        distance += sum(math.dist((y, x), m) for m in mates) * patch / len(mates)
        entropy += math.log(len(mates))
    n = len(cells)
    distance, entropy = distance / n, entropy / n
    return distance, (math.log(n) - entropy) / math.log(n), entropy  # p(k) = 1/n for every key


@pytest.mark.parametrize("name", ["samvit_base_patch16", "cait_xxs24_224"])
def test_uniform_attention_end_to_end_by_hand(name, images, tmp_path, monkeypatch):
    """With every query zeroed each softmax is uniform, and analyze must give the values counted
    patch by patch: SAM's windowed block (5×5 grid in 2×2 windows, padded) and global block;
    CaiT's self-attention blocks (talking heads mix equal scores: still uniform) and its class
    attention, whose entropy over the 16 patches is log 16."""
    kwargs, _ = SUPPORTED[name]
    spec = use_tiny(monkeypatch, name, kwargs, edit=zero_scores)
    a = analyze(spec, str(images), out=tmp_path, metrics="attention", batch_size=4, workers=0, progress=False,
                plots=False).metrics["attention"]
    windows = a.get("window_sizes", [0, 0])
    grid = 5 if name.startswith("samvit") else 4
    for layer, window in enumerate(windows):
        expected = uniform_values(grid, window or grid, 8)
        got = (a["distance_per_head"][layer], a["nmi_per_head"][layer], a["entropy_per_head"][layer])
        for e, g, what in zip(expected, got, ("distance", "nmi", "entropy")):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6, err_msg=f"block {layer} {what}")
    if name.startswith("cait"):
        np.testing.assert_allclose(a["class_attention"]["entropy_per_head"], math.log(16), rtol=1e-6)


@pytest.mark.parametrize("name", list(SUPPORTED))
def test_norms_of_every_supported_family(name, images, tmp_path, monkeypatch):
    """``norms`` over the patch tokens only: its median per block equals (to one histogram bin) the
    median of the block outputs' norms after the prefix tokens (CLS, distillation token, ``reg_token``
    registers), taken from the model's own forward pass; the prefix tokens' mean norm is there exactly
    when the model has prefix tokens."""
    from vitscope.metrics.norms import BINS, LOG10_RANGE
    from vitscope.data.sources import open_data
    from vitscope.data.transforms import model_transform
    from vitscope.taps import Taps, vit_info

    kwargs, prefix = SUPPORTED[name]
    spec = use_tiny(monkeypatch, name, kwargs)
    a = analyze(spec, str(images), metrics="norms", batch_size=4, workers=0, progress=False)
    n = a.metrics["norms"]
    torch.manual_seed(0)  # the same tiny model as use_tiny's
    model = create_timm(name, pretrained=False, **kwargs).eval()
    info = vit_info(model)
    outs: dict[int, list] = {}
    with Taps(model, ["block_out"], lambda layer, _t, x: outs.setdefault(layer, []).append(x)), torch.no_grad():
        ds = open_data(str(images), model_transform(model))
        model.forward_features(torch.stack([ds[i][0] for i in range(len(ds))]))
    bin_factor = 10 ** ((LOG10_RANGE[1] - LOG10_RANGE[0]) / BINS)
    for layer in range(info.depth):
        norms = torch.cat(outs[layer]).float()[:, prefix:].norm(dim=-1).flatten()
        assert n["median"][layer] == pytest.approx(float(norms.quantile(0.5)), rel=2 * (bin_factor - 1)), layer
        assert 0 <= n["outlier_fraction"][layer] <= 1 and n["median"][layer] <= n["p99"][layer]
        assert n["neighbour_cosine_others"][layer] is not None
    assert (n["prefix_mean_norm"][0] is not None) == (prefix > 0)
