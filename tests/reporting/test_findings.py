"""The claims table: each test on hand-made results whose verdict is known, families, and the report section."""

import json

import pytest

from vitscope.errors import VitscopeError
from vitscope.reporting import findings as F
from vitscope.reporting.html import build_report


def analysis(distance, nmi, tokens=None, hf=None, tok_sv=None, img_sv=None):
    L = len(distance)
    m = {"attention": {"distance": distance, "nmi": nmi, "nmi_std_over_heads": [0.0] * L, "entropy": [1.0] * L},
         "similarity": {"heads_cosine": tokens or [0.5] * L, "depth_cosine": tokens or [0.5] * L,
                        "tokens_cosine": tokens or [0.5] * L},
         "fourier": {"delta_log_amplitude_at_highest": [0.0] + (hf or [-1.0] * L), "highest_freq_over_pi": 1.0},
         "spectrum": {"token_log_sv": tok_sv or [[1.0, 0.0]] * (L + 1), "image_log_sv": img_sv or [[1.0, 0.0]] * (L + 1),
                      "image_numerical_rank": [len((img_sv or [[1.0, 0.0]])[0])] * (L + 1)}}
    return {"kind": "vitscope-analysis", "model": {"spec": "x"}, "metrics": m}


def write(folder, name, obj):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(obj))
    return folder


def verdict(ev, figure, word="", paper="Park"):
    rows = [(c, v) for c, v in F.check_claims(ev)
            if c.figure == figure and word in c.statement and c.paper.startswith(paper)]
    assert len(rows) == 1, rows
    return rows[0][1]


def test_families_parse_and_longest_key_wins():
    fam = F.parse_families(["moco=cl", "ft-moco=cl-ft", "simmim=mim"])
    assert F.family_of(["runs/ft-moco-probe"], fam) == "cl-ft"
    assert F.family_of(["runs/an-moco"], fam) == "cl"
    assert F.family_of(["runs/other"], fam) is None
    for bad in ("moco", "moco=contrastive", "=cl"):
        with pytest.raises(VitscopeError, match="NAME=FAMILY"):
            F.parse_families([bad])


def test_block_ranges_by_hand():
    v = [1, 2, 3, 4, 5, 6]
    assert F.later_half(v) == 5.0 and F.first_quarter(v) == 1.5 and F.last_quarter(v) == 5.5


def test_attention_claims_hold_fail_and_lack_data(tmp_path):
    fam = {"moco": "cl", "simmim": "mim"}
    cl = write(tmp_path / "an-moco", "results.json", analysis([10, 10, 16, 16], [0.3, 0.3, 0.02, 0.01]))
    mim = write(tmp_path / "an-simmim", "results.json", analysis([9, 8, 8, 12], [0.2, 0.3, 0.3, 0.1]))
    ev = F.gather([cl, mim], fam)
    v = verdict(ev, "Fig. 3", "attends")
    assert v.status == F.HOLDS and "16.0 px" in v.numbers and "10.0 px" in v.numbers  # later halves: 16 vs 10
    assert verdict(ev, "Fig. 4").status == F.HOLDS  # 0.015 < 0.2
    # swap the families: the same numbers now contradict the claims
    swapped = F.gather([cl, mim], {"moco": "mim", "simmim": "cl"})
    assert verdict(swapped, "Fig. 3", "attends").status == F.FAILS and verdict(swapped, "Fig. 4").status == F.FAILS
    assert verdict(F.gather([cl], fam), "Fig. 3", "attends").status == F.NO_DATA
    assert verdict(ev, "Fig. 8 left").status == F.NO_DATA  # no robustness results given


def test_every_pair_must_agree(tmp_path):
    fam = {"moco": "cl", "dino": "cl", "simmim": "mim"}
    a = write(tmp_path / "moco", "results.json", analysis([16, 16], [0.0, 0.0]))
    b = write(tmp_path / "dino", "results.json", analysis([9, 9], [0.0, 0.0]))  # a CL model below MIM
    c = write(tmp_path / "simmim", "results.json", analysis([10, 10], [0.1, 0.1]))
    assert verdict(F.gather([a, c], fam), "Fig. 3", "attends").status == F.HOLDS
    assert verdict(F.gather([a, b, c], fam), "Fig. 3", "attends").status == F.FAILS


def test_spectrum_and_fourier_claims(tmp_path):
    fam = {"moco": "cl", "simmim": "mim"}
    # token volume: CL 2 → 1 (falls by 1), MIM 1 → 2 (grows by 1); image volume: CL grows by 2, MIM by 0
    cl = write(tmp_path / "moco", "results.json", analysis([1, 1], [0, 0], hf=[-3.0, -2.0],
               tok_sv=[[2.0, 2.0], [1.5, 1.5], [1.0, 1.0]], img_sv=[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]))
    mim = write(tmp_path / "simmim", "results.json", analysis([1, 1], [0, 0], hf=[-1.0, -1.0],
                tok_sv=[[1.0, 1.0], [1.5, 1.5], [2.0, 2.0]], img_sv=[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]))
    ev = F.gather([cl, mim], fam)
    assert verdict(ev, "Fig. 7 top").status == F.HOLDS and "-1.000" in verdict(ev, "Fig. 7 top").numbers
    assert verdict(ev, "Fig. 7 bottom").status == F.HOLDS
    v = verdict(ev, "Fig. 9")
    assert v.status == F.HOLDS and "-2.500" in v.numbers and "-1.000" in v.numbers


def test_image_volume_uses_values_within_the_numerical_rank(tmp_path):
    fam = {"moco": "cl", "simmim": "mim"}
    # depth 0 has numerical rank 1: its second value (−40) is rounding noise and must not count;
    # over the top value CL grows by 1 and MIM by 2, so the claim does not hold ...
    cl = analysis([1, 1], [0, 0], img_sv=[[0.0, -40.0], [0.5, 0.0], [1.0, 0.0]])
    mim = analysis([1, 1], [0, 0], img_sv=[[0.0, -10.0], [1.0, 0.0], [2.0, 1.0]])
    for r in (cl, mim):
        r["metrics"]["spectrum"]["image_numerical_rank"] = [1, 2, 2]
    ev = F.gather([write(tmp_path / "moco", "results.json", cl), write(tmp_path / "simmim", "results.json", mim)], fam)
    v = verdict(ev, "Fig. 7 bottom")
    assert v.status == F.FAILS and "1.000" in v.numbers and "2.000" in v.numbers
    # ... while the noise value would have made it hold (CL +20.5 vs MIM +6.5 over both values)
    del cl["metrics"]["spectrum"]["image_numerical_rank"], mim["metrics"]["spectrum"]["image_numerical_rank"]
    ev = F.gather([write(tmp_path / "moco", "results.json", cl), write(tmp_path / "simmim", "results.json", mim)], fam)
    assert verdict(ev, "Fig. 7 bottom").status == F.NO_DATA  # older results without ranks: not decided


def probe(knn_cls, lin_cls, lin_gap):
    return {"provenance": {"model": "m"}, "knn": {"k": 20, "accuracy": {"cls": knn_cls}},
            "linear": {"cls": {"accuracy": lin_cls}, "gap": {"accuracy": lin_gap}}}


def test_probe_claims_read_both_layouts(tmp_path):
    fam = {"moco": "cl", "simmim": "mim", "hybrid": "hybrid"}
    cl = write(tmp_path / "probe-moco", "probe.json", probe([0.3, 0.5, 0.6, 0.7], [0.3, 0.5, 0.6, 0.7], [0.2, 0.4, 0.6, 0.7]))
    mim = write(tmp_path / "probe-simmim", "probe.json", probe([0.3, 0.4, 0.4, 0.3], [0.3, 0.5, 0.5, 0.4], [0.3, 0.5, 0.5, 0.4]))
    ev = F.gather([cl, mim], fam)
    assert verdict(ev, "Fig. 3", "20-NN", "Shekhar").status == F.HOLDS  # 0.7 vs 0.3
    assert verdict(ev, "Fig. 11", "Early").status == F.HOLDS  # first quarter GAP: 0.3 > 0.2
    assert verdict(ev, "Fig. 11", "Later").status == F.HOLDS  # last quarter GAP: 0.7 > 0.4
    assert verdict(ev, "Fig. 12 left", "linear").status == F.NO_DATA
    hyb = write(tmp_path / "probe-hybrid", "probe.json", probe([0.5] * 4, [0.5, 0.5, 0.6, 0.8], [0.5] * 4))
    assert verdict(F.gather([cl, mim, hyb], fam), "Fig. 12 left", "linear").status == F.HOLDS  # 0.8 > 0.7, 0.4


def test_reinit_claims_from_finetune_runs(tmp_path):
    fam = {"moco": "cl", "simmim": "mim"}
    runs = {"ft-moco": ([], 0.80), "ft-moco-first": ([0], 0.78), "ft-moco-last": ([4, 5], 0.60),
            "ft-simmim": ([], 0.85), "ft-simmim-first": ([0, 1], 0.70), "ft-simmim-last": ([5], 0.84)}
    folders = [write(tmp_path / k, "finetune.json", {"accuracy": a, "reinit_blocks": b,
                                                      "provenance": {"model": k}}) for k, (b, a) in runs.items()]
    ev = F.gather(folders, fam)
    last = verdict(ev, "Fig. F.3", "last")
    assert last.status == F.HOLDS and "0.200" in last.numbers and "0.010" in last.numbers
    assert verdict(ev, "Fig. F.3", "first").status == F.HOLDS  # MIM drops 0.15, CL 0.02
    assert verdict(ev, "Fig. 1 left", "fine-tuning").status == F.HOLDS  # 0.85 > 0.80


def compare(a, b, block, fc1=None, qkv=None, ln1=None):
    diag = lambda v: [[v[i] if i == j else 0.0 for j in range(len(v))] for i in range(len(v))]  # noqa: E731
    cka = {"block": diag(block)}
    if fc1:
        cka.update(fc1=diag(fc1), qkv=diag(qkv), ln1=diag(ln1))
    return {"format": "vitscope-compare", "models": [{"spec": a}, {"spec": b}], "cka": cka, "agreement": None}


def test_cka_claims(tmp_path):
    fam = {"moco": "cl", "simmim": "mim", "ft-simmim": "mim-ft"}
    c = write(tmp_path / "cka", "results.json", compare("zoo:moco", "zoo:simmim", [0.9, 0.8, 0.5, 0.4],
                                                          [0.8] * 4, [0.5] * 4, [0.6] * 4))
    ev = F.gather([c], fam)
    assert verdict(ev, "Fig. 1", paper="Shekhar").status == F.HOLDS  # 0.9 > 0.4
    assert verdict(ev, "Fig. 2", paper="Shekhar").status == F.HOLDS
    assert verdict(ev, "Fig. 5", paper="Shekhar").status == F.NO_DATA
    ft = write(tmp_path / "cka-ft", "results.json", compare("zoo:moco", "runs/ft-simmim/checkpoint.pt", [0.9] * 4))
    v = verdict(F.gather([c, ft], fam), "Fig. 5", paper="Shekhar")
    assert v.status == F.HOLDS and "0.650" in v.numbers and "0.900" in v.numbers


def test_report_has_the_findings_table(tmp_path):
    cl = write(tmp_path / "an-moco", "results.json", analysis([16, 16], [0.0, 0.0]))
    mim = write(tmp_path / "an-simmim", "results.json", analysis([9, 9], [0.2, 0.2]))
    page = build_report([cl, mim], tmp_path / "r.html", families={"moco": "cl", "simmim": "mim"}).read_text()
    assert "Findings" in page and "Fig. 3" in page and page.count("✓") >= 2 and "not enough data" in page
    assert "Findings" not in build_report([cl], tmp_path / "plain.html").read_text()



def test_report_shows_decided_claims_and_folds_the_rest(tmp_path):
    """Analyses of one CL and one MIM model decide the attention claims; the rest go behind a fold,
    under one line naming what would decide them."""
    cl = write(tmp_path / "an-moco", "results.json", analysis([16, 16], [0.0, 0.0]))
    mim = write(tmp_path / "an-simmim", "results.json", analysis([9, 9], [0.2, 0.2]))
    page = build_report([cl, mim], tmp_path / "r.html", families={"moco": "cl", "simmim": "mim"}).read_text()
    shown, folded = page.split("<details>")
    assert "not enough data: " not in shown and "✓" in shown  # no undecided row above the fold
    assert "robustness of a CL and a MIM model, probes of a CL and a MIM model, fine-tuning" in shown
    assert "scripts/reproduce.sh" in shown and "not enough data: " in folded and "✓" not in folded
    ev = F.gather([cl, mim], {"moco": "cl", "simmim": "mim"})
    undecided = sum(v.status == F.NO_DATA for _, v in F.check_claims(ev))
    assert f"{undecided} of the {len(F.CLAIMS)} claims are not decided" in shown

def test_markdown_table_has_one_row_per_claim(tmp_path):
    cl = write(tmp_path / "an-moco", "results.json", analysis([16, 16], [0.0, 0.0]))
    md = F.findings_markdown(F.check_claims(F.gather([cl], {"moco": "cl"})))
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(F.CLAIMS) and all(ln.count("|") == 6 for ln in lines)


def test_finetuning_claim_pairs_each_mim_model_with_its_own_finetuned_self(tmp_path):
    # regression: comparing the smallest CKA after fine-tuning with the largest before, across
    # different MIM models, called 0.79 → 0.815 (MAE) and 0.87 → 0.889 (SimMIM) a failure
    fam = {"moco": "cl", "simmim": "mim", "mae": "mim", "ft-simmim": "mim-ft", "ft-mae": "mim-ft"}
    runs = {"cka-moco-mae": ("zoo:mae", 0.79), "cka-moco-simmim": ("zoo:simmim", 0.87),
            "cka-moco-ft-mae": ("runs/ft-mae/checkpoint.pt", 0.815),
            "cka-moco-ft-simmim": ("runs/ft-simmim/checkpoint.pt", 0.889)}
    folders = [write(tmp_path / k, "results.json", compare("zoo:moco", spec, [v] * 4)) for k, (spec, v) in runs.items()]
    v = verdict(F.gather(folders, fam), "Fig. 5", paper="Shekhar")
    assert v.status == F.HOLDS and "moco vs mae: 0.790 before, 0.815 after" in v.numbers
    lower = write(tmp_path / "cka-moco-ft-mae", "results.json", compare("zoo:moco", "runs/ft-mae/checkpoint.pt", [0.5] * 4))
    assert verdict(F.gather(folders[:2] + [lower, folders[3]], fam), "Fig. 5", paper="Shekhar").status == F.FAILS


def test_two_contrastive_models_shekhar_fig1a_fig4_and_f1(tmp_path):
    fam = {"moco": "cl", "dino": "cl", "mae": "mim"}

    def agreement(top5, top10, f1):
        return {"kendall_tau_b": {"all": {"top5": top5, "top10": top10}}, "top1_f1_macro": f1}

    cc = compare("zoo:moco", "zoo:dino", [0.95, 0.9, 0.9, 0.6])
    cc["agreement"] = agreement(0.6, 0.5, 0.93)
    cm = compare("zoo:moco", "zoo:mae", [0.8, 0.6, 0.5, 0.4])
    cm["agreement"] = agreement(0.4, 0.45, 0.88)
    folders = [write(tmp_path / "cka-moco-dino", "results.json", cc), write(tmp_path / "cka-moco-mae", "results.json", cm)]
    ev = F.gather(folders, fam)
    v = verdict(ev, "Fig. 1a", "more closely", paper="Shekhar")  # before the last quarter: 0.917 vs 0.633
    assert v.status == F.HOLDS and "0.917" in v.numbers and "0.633" in v.numbers
    v = verdict(ev, "Fig. 1a", "except", paper="Shekhar")  # 0.6 < 0.917
    assert v.status == F.HOLDS and "last quarter 0.600" in v.numbers
    v = verdict(ev, "Fig. 4", paper="Shekhar")
    assert v.status == F.HOLDS and "τ-b top-5" in v.numbers and "τ-b top-10" in v.numbers
    assert verdict(ev, "Sec. 2.4", paper="Shekhar").status == F.HOLDS
    # one k where a CL–MIM pair ranks more alike than the CL pair: the claim does not hold
    cm["agreement"] = agreement(0.4, 0.55, 0.95)
    ev = F.gather([folders[0], write(tmp_path / "cka-moco-mae", "results.json", cm)], fam)
    assert verdict(ev, "Fig. 4", paper="Shekhar").status == F.FAILS
    assert verdict(ev, "Sec. 2.4", paper="Shekhar").status == F.FAILS
    # one CL model only: not enough data
    only = F.gather([folders[1]], fam)
    assert all(verdict(only, f, w, paper="Shekhar").status == F.NO_DATA
               for f, w in (("Fig. 1a", "except"), ("Fig. 4", ""), ("Sec. 2.4", "")))


def test_finetuning_claims_are_not_meaningful_below_the_linear_probe(tmp_path):
    fam = {"moco": "cl", "simmim": "mim", "ft-moco": "cl-ft", "ft-simmim": "mim-ft"}
    probes = [write(tmp_path / "probe-moco", "probe.json", probe([0.4] * 2, [0.3, 0.45], [0.4] * 2)),
              write(tmp_path / "probe-simmim", "probe.json", probe([0.3] * 2, [0.3, 0.38], [0.3] * 2))]

    def ft(accs):
        return [write(tmp_path / k, "finetune.json", {"accuracy": a, "reinit_blocks": [], "provenance": {"model": k}})
                for k, a in zip(("ft-moco", "ft-simmim"), accs)]
    good = F.gather(probes + ft([0.50, 0.55]), fam)
    assert verdict(good, "Fig. 1 left", "fine-tuning").status == F.HOLDS  # both above their probes: 0.50 > 0.45, 0.55 > 0.38
    bad = F.gather(probes + ft([0.26, 0.55]), fam)  # fine-tuned MoCo 0.26 below its probe 0.45
    v = verdict(bad, "Fig. 1 left", "fine-tuning")
    assert v.status == F.NOT_MEANINGFUL and "ft-moco 0.260 < linear probe 0.450" in v.numbers
    assert "not meaningful" in F.findings_markdown(F.check_claims(bad))
