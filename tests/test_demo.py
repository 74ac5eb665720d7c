"""`vitscope demo` on the shipped zoo and images: the report, and the three findings the zoo must show."""

import pytest

from vitscope.commands.demo import MODELS, run_demo
from vitscope.models.zoo import manifest, zoo_dir
from vitscope.reporting.findings import HOLDS, check_claims, gather

SHIPPED = manifest(zoo_dir())


@pytest.mark.skipif(not all(s.removeprefix("zoo:") in SHIPPED for s in MODELS.values()),
                    reason="the zoo's MoCo v3 and SimMIM models do not ship in this checkout")
def test_demo_writes_the_report_and_the_zoo_shows_the_papers_findings(tmp_path, monkeypatch):
    monkeypatch.delenv("VITSCOPE_ZOO", raising=False)
    report, text = run_demo(tmp_path, device="cpu")
    page = report.read_text()
    assert "Findings" in page and page.count("<img") >= 10 and "Fig. 3" in text
    folders = [p for p in tmp_path.iterdir() if p.is_dir()]
    verdicts = {(c.paper.split()[0], c.figure): v for c, v in check_claims(gather(folders, {"moco": "cl", "simmim": "mim"}))}
    # the bar for the shipped models: MoCo attends further, with lower NMI in the later half,
    # and its last block has the higher 20-NN accuracy
    for key in (("Park", "Fig. 3"), ("Park", "Fig. 4"), ("Shekhar", "Fig. 3")):
        assert verdicts[key].status == HOLDS, (key, verdicts[key])
