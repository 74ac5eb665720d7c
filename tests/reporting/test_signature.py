"""The CL–MIM signature on hand-made results files whose positions are computed by hand."""

import json
import math

import numpy as np
import pytest
from cli_helpers import run_cli

from vitscope.errors import VitscopeError
from vitscope.reporting import signature as S
from vitscope.reporting.html import build_report

LOG_N = math.log(4)  # a 2×2 grid: uniform attention entropy log 4


def analysis(spec, nmi, nmi_std=None, entropy_ratio=None, distance_per_head=None, size=32, data="shipped.npz"):
    """An ``analyze`` results file of a model with a 2×2 grid of 4-px patches and two heads: NMI as
    given, the other metrics constant over blocks."""
    L = len(nmi)
    heads = distance_per_head or [[3.0, 3.0]] * L
    per_block = lambda v: [v] * L  # noqa: E731
    return {
        "kind": "vitscope-analysis",
        "model": {"spec": spec, "depth": L, "grid_size": [2, 2], "patch_size": [4, 4]},
        "data": {"spec": data, "preprocessing": {"input_size": [3, size, size]}},
        "metrics": {
            "attention": {"distance": [float(np.mean(h)) for h in heads], "distance_per_head": heads,
                          "nmi": nmi, "nmi_per_head": [[v, v] for v in nmi],
                          "nmi_std_over_heads": nmi_std or per_block(0.01),
                          "entropy": [r * LOG_N for r in (entropy_ratio or per_block(0.5))],
                          "entropy_per_head": per_block([1.0, 1.0]), "max_entropy": LOG_N},
            "similarity": {k: per_block(0.5) for k in ("heads_cosine", "depth_cosine", "tokens_cosine")},
            "spectrum": {k: [[1.0, 0.0]] * (L + 1) for k in ("token_log_sv", "token_delta_log_sv", "image_log_sv",
                                                              "image_delta_log_sv")},
            "fourier": {"freqs_over_pi": [0.0, 1.0], "delta_log_amplitude": [[0.0, -1.0]] * (L + 1),
                        "highest_freq_over_pi": 1.0, "delta_log_amplitude_at_highest": [0.0] + per_block(-1.0)},
        },
    }


def write(folder, obj, name="results.json"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(obj))
    return folder


def prop(result, key, model=0):
    return next(p for p in result["signatures"][model]["properties"] if p["key"] == key)


def three(tmp_path, model, cl, mim):
    """Write the three analyses, gather them (model, CL, MIM) and return the signature."""
    folders = [write(tmp_path / n, a) for n, a in (("model", model), ("cl", cl), ("mim", mim))]
    return S.signatures(*S.gather(folders[:1], {folders[1]: "cl", folders[2]: "mim"}))


def test_uniform_distance_by_hand():
    assert S.uniform_distance([2, 1], [4, 4]) == pytest.approx(2.0)  # pairs 0, 4, 4, 0 px
    # 2×2 grid, 1 px: from each query 0, 1, 1, √2
    assert S.uniform_distance([2, 2], [1, 1]) == pytest.approx((2 + math.sqrt(2)) / 4)


def test_position_per_depth_and_bands_by_hand(tmp_path):
    r = three(tmp_path, analysis("m", [0.2, 0.4, 0.25, 0.1]), analysis("c", [0.1, 0.1, 0.1, 0.1]),
              analysis("s", [0.5, 0.5, 0.3, 0.3]))
    p = prop(r, "nmi")
    # s = (x − x_MIM)/(x_CL − x_MIM):
    # (0.2 − 0.5)/(0.1 − 0.5), (0.4 − 0.5)/(−0.4), (0.25 − 0.3)/(−0.2), (0.1 − 0.3)/(−0.2)
    assert [d["position"] for d in p["per_depth"]] == pytest.approx([0.75, 0.25, 0.25, 1.0])
    assert [d["depth"] for d in p["per_depth"]] == [0.25, 0.5, 0.75, 1.0]
    assert p["bands"]["first half"]["position"] == pytest.approx((0.3 - 0.5) / (0.1 - 0.5))  # band means first
    later = p["bands"]["later half"]
    assert (later["model"], later["cl"], later["mim"]) == pytest.approx((0.175, 0.1, 0.3))
    assert later["position"] == pytest.approx(0.625) and later["separates"] is True
    # properties without a recorded spread are placed without the test; identical references never are
    assert prop(r, "heads_cosine")["bands"]["later half"] == {"model": 0.5, "cl": 0.5, "mim": 0.5, "spread": None,
                                                             "separates": False, "position": None}


def test_references_of_other_depths_are_interpolated_on_relative_depth(tmp_path):
    # CL has 2 blocks (t = 0.5, 1): at the model's t = 0.25, 0.5, 0.75, 1 it reads 0.1, 0.1, 0.2, 0.3
    r = three(tmp_path, analysis("m", [0.1, 0.55, 0.6, 0.3]), analysis("c", [0.1, 0.3]), analysis("s", [1.0] * 4))
    p = prop(r, "nmi")
    assert [d["cl"] for d in p["per_depth"]] == pytest.approx([0.1, 0.1, 0.2, 0.3])
    assert [d["position"] for d in p["per_depth"]] == pytest.approx([1.0, 0.5, 0.5, 1.0])


def test_references_within_their_spread_do_not_separate(tmp_path):
    # block 1: |0.1 − 0.3| = 0.2 < the MIM spread 0.25; block 2: gap 0.2 = spread 0.2 (not above it);
    # block 3: gap 0.5 > 0.2
    r = three(tmp_path, analysis("m", [0.2, 0.2, 0.35]), analysis("c", [0.1, 0.1, 0.1], nmi_std=[0.05, 0.2, 0.2]),
              analysis("s", [0.3, 0.3, 0.6], nmi_std=[0.25, 0.0, 0.0]))
    d = prop(r, "nmi")["per_depth"]
    assert [x["spread"] for x in d] == pytest.approx([0.25, 0.2, 0.2])  # the larger of the references' spreads
    assert [x["separates"] for x in d] == [False, False, True]
    assert d[0]["position"] is None and d[1]["position"] is None and d[2]["position"] == pytest.approx(0.5)
    assert any(row[1] == "NMI of attention" and row[4] == "does not separate" for row in S.table_rows(r))


def test_distance_as_a_fraction_of_uniform_with_spread_over_heads(tmp_path):
    d0 = S.uniform_distance([2, 2], [4, 4])
    r = three(tmp_path, analysis("m", [0.1], distance_per_head=[[d0, 3 * d0]]),
              analysis("c", [0.1], distance_per_head=[[2 * d0, 2 * d0]]),
              analysis("s", [0.1], distance_per_head=[[0.5 * d0, 0.5 * d0]]))
    d = prop(r, "attention_distance")["per_depth"][0]
    assert (d["model"], d["cl"], d["mim"], d["spread"]) == pytest.approx((2.0, 2.0, 0.5, 0.0))
    assert d["position"] == pytest.approx(1.0)
    m = S.distance_fraction(S.ModelResults("m", analysis=analysis("m", [0.1], distance_per_head=[[d0, 3 * d0]])))
    assert m.spread == pytest.approx([1.0])  # population std of 1 and 3


def test_untrained_flag_needs_every_block_near_uniform(tmp_path):
    flat = S.ModelResults("r", analysis=analysis("r", [0.0, 0.0], entropy_ratio=[0.99, 0.985]))
    assert "looks untrained" in S.looks_untrained(flat)
    one_block = S.ModelResults("t", analysis=analysis("t", [0.0, 0.0], entropy_ratio=[0.99, 0.97]))
    assert S.looks_untrained(one_block) is None  # 97 % < 98 % in block 2
    r = three(tmp_path, analysis("m", [0.0, 0.0], entropy_ratio=[0.999, 0.999]), analysis("c", [0.1, 0.1]),
              analysis("s", [0.5, 0.5]))
    assert list(r["signatures"][0]["flags"]) == ["model"]
    assert "looks untrained" in S.table_text(r)
    assert r["signatures"][0]["notes"] == []  # all three on the same images


def test_analyses_of_different_images_are_noted(tmp_path):
    r = three(tmp_path, analysis("m", [0.2], data="mine.npz"), analysis("c", [0.1]), analysis("s", [0.3]))
    assert r["signatures"][0]["notes"] == ["analysed on different images: model mine.npz, cl shipped.npz, "
                                           "mim shipped.npz"]


def test_scalar_properties_with_standard_errors():
    probe = {"provenance": {"model": "m", "val_images": 100}, "knn": {"accuracy": {"cls": [0.2, 0.4, 0.5]}}}
    gain = S.last_block_gain("knn")(S.ModelResults("m", probe=probe))
    assert gain.values == pytest.approx([0.1]) and gain.spread == pytest.approx([0.07])  # √((.24 + .25)/100)
    assert S.accuracy_peak_depth("knn")(S.ModelResults("m", probe=probe)).values == pytest.approx([1.0])
    rob = {"spec": "m", "shape_bias": {"shape_bias": 0.6, "per_class": {"cat": {"shape": 6, "texture": 4, "other": 9}}},
           "noise": {"images": 50, "clean_accuracy": 0.5, "accuracy": [0.5, 0.5], "drop": [0.0, 0.0]}}
    sb = S.shape_bias(S.ModelResults("m", robustness=rob))
    assert sb.values == pytest.approx([0.6]) and sb.spread == pytest.approx([math.sqrt(0.24 / 10)])
    assert S.noise_drop(S.ModelResults("m", robustness=rob)).spread == pytest.approx([math.sqrt(0.5 / 50)])


def test_cka_to_each_reference(tmp_path):
    def compare(a, b, diag):
        return {"format": "vitscope-compare", "models": [{"spec": a}, {"spec": b}],
                "cka": {"block": np.diag(diag).tolist()}}
    r = {"format": "vitscope-compare"}
    folders = [write(tmp_path / n, analysis(n, [0.1, 0.1])) for n in ("m", "c", "s")]
    for name, (a, b, d) in {"mc": ("m", "c", [0.9, 0.6]), "ms": ("s", "m", [0.5, 0.8]),
                            "cs": ("c", "s", [0.5, 0.2])}.items():
        folders.append(write(tmp_path / name, {**r, **compare(a, b, d)}))
    result = S.signatures(*S.gather([folders[0], *folders[3:]], {folders[1]: "cl", folders[2]: "mim"}))
    # CKA to CL: x = CKA(m, c), x_CL = 1, x_MIM = CKA(s, c) → (0.9 − 0.5)/(1 − 0.5), (0.6 − 0.2)/(1 − 0.2)
    assert [d["position"] for d in prop(result, "cka_cl")["per_depth"]] == pytest.approx([0.8, 0.5])
    # CKA to MIM: x = CKA(m, s), x_CL = CKA(c, s), x_MIM = 1 → (0.5 − 1)/(0.5 − 1), (0.8 − 1)/(0.2 − 1)
    assert [d["position"] for d in prop(result, "cka_mim")["per_depth"]] == pytest.approx([1.0, 0.25])
    # a 4-block model against a 2-block one: blocks 1, 2 → block 1, blocks 3, 4 → block 2
    assert S.aligned_diagonal([[1, 2], [3, 4], [5, 6], [7, 8]], True).tolist() == [1, 3, 6, 8]
    assert S.aligned_diagonal([[1, 3, 5, 7], [2, 4, 6, 8]], False).tolist() == [1, 3, 6, 8]


def test_missing_results_and_bad_references(tmp_path):
    r = three(tmp_path, analysis("m", [0.1]), analysis("c", [0.2]), analysis("s", [0.3]))
    assert prop(r, "shape_bias")["missing"] == "needs robustness results of the model and the CL reference and " \
                                               "the MIM reference"
    with pytest.raises(VitscopeError, match="RESULTS=cl"):
        S.parse_references(["runs/x=contrastive"])
    with pytest.raises(VitscopeError, match="one CL and one MIM"):
        S.parse_references([f"{tmp_path / 'cl'}=cl"])
    cl, mim = tmp_path / "cl", tmp_path / "mim"
    big = write(tmp_path / "big", analysis("b", [0.1], size=224))
    with pytest.raises(VitscopeError, match="different input sizes.*224x224"):
        S.signatures(*S.gather([big], {cl: "cl", mim: "mim"}))
    with pytest.raises(VitscopeError, match="exactly one model"):
        S.gather([big], {cl: "cl", tmp_path / "model": "cl", mim: "mim"})


def test_cli_writes_files_and_the_report_shows_them(tmp_path, monkeypatch, capsys):
    folders = [write(tmp_path / n, analysis(n, v)) for n, v in (("m", [0.2, 0.2]), ("c", [0.1, 0.1]),
                                                               ("s", [0.3, 0.3]))]
    out = tmp_path / "sig"
    code, stdout, _ = run_cli(monkeypatch, capsys, "signature", str(folders[0]), "--reference", f"{folders[1]}=cl",
                              "--reference", f"{folders[2]}=mim", "--out", str(out))
    assert code == 0 and "NMI of attention" in stdout
    assert {p.name for p in out.iterdir()} == {"signature.json", "signature.png", "signature.md"}
    assert json.loads((out / "signature.json").read_text())["format"] == "vitscope-signature"
    page = build_report([out], tmp_path / "report.html").read_text()
    assert "CL–MIM signature" in page and "NMI of attention" in page and "signature.png" in page


def test_cli_refuses_default_references_for_other_input_sizes(tmp_path, monkeypatch, capsys):
    big = write(tmp_path / "big", analysis("b", [0.1], size=224))
    code, _, err = run_cli(monkeypatch, capsys, "signature", str(big), "--out", str(tmp_path / "o"))
    assert code == 2 and "32-px models only" in err and "224x224" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing analysed, nothing written


def test_signature_file_is_checked_like_every_results_file(tmp_path):
    folders = [write(tmp_path / n, analysis(n, v)) for n, v in (("m", [0.2]), ("c", [0.1]), ("s", [0.3]))]
    result = S.signatures(*S.gather(folders[:1], {folders[1]: "cl", folders[2]: "mim"}))
    good = write(tmp_path / "sig", result, "signature.json")
    assert S.read_signature(good / "signature.json") == json.loads(json.dumps(result))
    (good / "signature.json").write_text(json.dumps(result)[:-20])
    with pytest.raises(VitscopeError, match="signature.json is not valid JSON"):
        build_report([good], tmp_path / "r.html")
    lacking = write(tmp_path / "lacking", {**result, "signatures": [{"spec": "m", "flags": {}}]}, "signature.json")
    with pytest.raises(VitscopeError, match=r"lacks signatures\[0\]\.properties"):
        build_report([lacking], tmp_path / "r.html")
    newer = write(tmp_path / "newer", {**result, "schema_version": 99}, "signature.json")
    with pytest.raises(VitscopeError, match="newer than this vitscope reads"):
        S.read_signature(newer / "signature.json")


def test_one_folder_cannot_be_both_references(tmp_path):
    (tmp_path / "moco").mkdir()
    with pytest.raises(VitscopeError, match="one folder cannot be both the CL and the MIM reference"):
        S.parse_references([f"{tmp_path / 'moco'}=cl", f"{tmp_path / 'moco'}=mim"])


def test_one_model_cannot_be_both_references():
    ref = S.Source("runs/moco", [("zoo:moco-cifar10", "analysis", {})], [])
    model = S.Source("runs/hybrid", [("zoo:hybrid-cifar10", "analysis", {})], [])
    with pytest.raises(VitscopeError, match="one model cannot be both the CL and the MIM reference: zoo:moco-cifar10"):
        S.gather_sources([(model, "model"), (ref, "cl"), (ref, "mim")])


def test_signature_file_has_one_version_field(tmp_path):
    result = three(tmp_path, analysis("m", [0.5, 0.5]), analysis("cl", [0.2, 0.2]), analysis("mim", [0.8, 0.8]))
    assert "version" not in result  # the results layout's schema_version, stamped when written, is the one
