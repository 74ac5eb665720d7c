"""Result objects: tables that hold exactly the results' numbers, figures, save / read round trips, findings."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CL, MIM
from matplotlib.figure import Figure

import vitscope
from vitscope.api.frames import ANALYSIS_QUANTITIES
from vitscope.errors import VitscopeError

RUN = {"batch_size": 6, "workers": 0, "progress": False}


@pytest.fixture(scope="module")
def results(demo):
    """An analysis of each zoo model, their comparison and 5-NN probes, all in memory."""
    x, y = demo
    moco = vitscope.analyze(CL, x, metrics="attention,similarity,spectrum,fourier,norms", **RUN)
    simmim = vitscope.analyze(MIM, x, **RUN)
    cka = vitscope.compare(CL, MIM, x, images=None, layer_types=["block", "qkv"], **RUN)
    knn = {m: vitscope.probe(m, (x, y), (x, y), k=5, epochs=1, features="cls,gap", save_probe=True,
                             probe_at="cls:5", **RUN) for m in (CL, MIM)}
    return moco, simmim, cka, knn


def test_analysis_frame_holds_every_number_of_the_results(results):
    moco = results[0]
    df = moco.to_frame()
    assert list(df.columns) == ["model", "part", "metric", "quantity", "block", "head", "x", "value", "figure"]
    assert set(df["model"]) == {CL} and set(df["part"]) == {"encoder"}
    depth, heads = moco.results["model"]["depth"], moco.results["model"]["num_heads"]
    for (metric, key), (layout, figure) in ANALYSIS_QUANTITIES.items():
        values = np.asarray(moco.metrics[metric][key], dtype=float)
        rows = df[(df.metric == metric) & (df.quantity == key.removesuffix("_per_head"))]
        rows = rows[rows["head"].notna()] if layout == "head" else rows[rows["head"].isna()]
        assert len(rows) == values.size, key
        np.testing.assert_array_equal(rows["value"].to_numpy(), values.ravel(), err_msg=key)
        assert (rows["figure"].isna() if figure is None else rows["figure"] == figure).all(), key
    nmi = df[(df.quantity == "nmi") & df["head"].isna()]
    assert nmi["block"].tolist() == list(range(1, depth + 1)) and nmi["figure"].iloc[0] == "Park Fig. 4"
    per_head = df[(df.quantity == "nmi") & df["head"].notna()]
    assert len(per_head) == depth * heads and per_head["head"].max() == heads
    fourier = df[df.quantity == "delta_log_amplitude"]
    assert fourier["block"].min() == 0 and set(fourier["x"]) == set(moco.metrics["fourier"]["freqs_over_pi"])


def test_comparison_and_probe_frames(results):
    _, _, cka, knn = results
    df = cka.to_frame()
    assert len(df) == 2 * 6 * 6 and set(df.layer_type) == {"block", "qkv"} and set(df.quantity) == {"cka"}
    block = df[df.layer_type == "block"].pivot(index="block_a", columns="block_b", values="value").to_numpy()
    np.testing.assert_array_equal(block, cka.cka("block"))
    assert cka.cka("block").shape == (6, 6) and (df.figure[df.layer_type == "qkv"] == "Shekhar Fig. 2").all()
    frame = knn[CL].to_frame()
    knn_rows = frame[(frame.method == "knn") & (frame.feature == "cls")]
    assert knn_rows["value"].tolist() == knn[CL].results["knn"]["accuracy"]["cls"]
    assert knn_rows["block"].tolist() == list(range(1, 7)) and frame[frame.feature == "pooled"]["block"].isna().all()
    # k-NN and linear on cls, gap and pooled (accuracy), linear train accuracy too
    assert len(frame) == 2 * (6 + 6 + 1) + (6 + 6 + 1)


def test_save_then_read_gives_the_same_object(results, tmp_path):
    moco, _, cka, knn = results
    for result in (moco, cka, knn[CL]):
        folder = result.save(tmp_path / type(result).__name__)
        back = vitscope.read(folder)
        assert type(back) is type(result) and back.folder == folder and back.results == result.results
    assert sorted(p.name for p in (tmp_path / "Analysis").iterdir()) == [
        "attention.png", "fourier.png", "norms.png", "results.json", "similarity.png", "spectrum.png"]
    assert sorted(p.name for p in (tmp_path / "Probe").iterdir()) == ["knn.png", "linear.png", "probe.json", "probe.pt"]
    back = vitscope.read(tmp_path / "Probe" / "probe.json")
    assert back.probe_state is not None and back.probe_state["feature"] == "cls" and back.probe_state["layer"] == 5
    with pytest.raises(VitscopeError, match="is not a results folder"):
        vitscope.read(tmp_path)


def test_figures_and_notebook_views(results):
    moco, simmim, cka, knn = results
    fig = vitscope.plot([moco, simmim], "attention", labels=["MoCo", "SimMIM"])
    assert isinstance(fig, Figure) and [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["MoCo", "SimMIM"]
    assert len(moco.plot("norms").axes) == 4
    assert len(moco.plot("spectrum").axes) >= 3 and len(cka.plot().axes) == 3  # two heat maps and the colour bar
    assert isinstance(knn[CL].plot("linear"), Figure)
    for bad in (lambda: moco.plot("nosuch"), lambda: cka.plot("fc1"), lambda: knn[CL].plot("svm")):
        with pytest.raises(VitscopeError, match="Valid options are"):
            bad()
    html = moco._repr_html_()
    assert CL in html and "attention, similarity, spectrum, fourier" in html and CL in repr(moco)
    assert "CKA of block outputs" in cka._repr_html_()


def test_findings_of_results_in_memory_equal_the_reports(results, tmp_path):
    from vitscope.reporting.findings import check_claims, gather

    moco, simmim, cka, knn = results
    table = vitscope.findings({moco: "cl", simmim: "mim", cka: None, knn[CL]: "cl", knn[MIM]: "mim"})
    assert list(table.columns) == ["paper", "figure", "claim", "verdict", "mark", "measured"]
    folders = [moco.save(tmp_path / "moco", plots=False), simmim.save(tmp_path / "simmim", plots=False)]
    folders += [r.save(tmp_path / name) for r, name in ((cka, "cka"), (knn[CL], "knn-moco"), (knn[MIM], "knn-simmim"))]
    files = check_claims(gather(folders, {"moco": "cl", "simmim": "mim"}))
    assert table["verdict"].tolist() == [v.status for _, v in files]
    measured = vitscope.findings({moco: "cl", simmim: "mim", cka: ("cl", "mim")}, only_measured=True)
    assert "not enough data" not in set(measured.verdict) and "Fig. 3" in set(measured.figure)
    with pytest.raises(VitscopeError, match="two families"):
        vitscope.findings({moco: "cl", cka: ("mim", "mim")})


def test_signature_of_results_in_memory(results, demo, tmp_path):
    moco, simmim, _, knn = results
    hybrid = vitscope.analyze("zoo:hybrid-cifar10", demo[0], metrics="attention", **RUN)
    sig = vitscope.signature(hybrid, cl=[moco, knn[CL]], mim=[simmim, knn[MIM]])
    assert isinstance(sig, vitscope.Signature) and sig.references == {"cl": CL, "mim": MIM}
    # the table holds every placed number: NMI over the later half is the mean of blocks 4-6 of each analysis
    df = sig.to_frame()
    nmi = df[(df.key == "nmi") & (df.band == "later half")].set_index("quantity")["value"]
    for who, analysis in (("model", hybrid), ("cl", moco), ("mim", simmim)):
        assert nmi[who] == pytest.approx(np.mean(analysis.metrics["attention"]["nmi"][3:]), rel=1e-12), who
    assert nmi["position"] == pytest.approx((nmi["model"] - nmi["mim"]) / (nmi["cl"] - nmi["mim"]), rel=1e-12)
    placed = [p for p in sig.results["signatures"][0]["properties"] if "missing" not in p]
    assert len(df) == 5 * sum(len(p["per_depth"]) + len(p["bands"]) for p in placed)
    # the hybrid was analysed for attention only and not probed: those properties have no rows
    missing = {p["key"]: p["missing"] for p in sig.results["signatures"][0]["properties"] if "missing" in p}
    assert missing["heads_cosine"] == "needs analysis results of the model" and "knn_peak_depth" in missing
    assert not set(missing) & set(df.key)
    folder = sig.save(tmp_path / "sig")
    assert sorted(p.name for p in folder.iterdir()) == ["signature.json", "signature.md", "signature.png"]
    back = vitscope.read(folder)
    assert type(back) is vitscope.Signature and back.results == sig.results
    assert isinstance(sig.plot(), Figure) and "MIM reference" in sig._repr_html_()
    with pytest.raises(VitscopeError, match="both a CL and a MIM reference"):
        vitscope.signature(hybrid, cl=moco)
