"""A pretraining run's log summarised: wall time from the logged intervals, a torn last line left out."""

import json

import pytest

from vitscope.errors import VitscopeError
from vitscope.runlog import training_summary


def write_run(folder, records, tail=""):
    (folder / "config.json").write_text(json.dumps({"batch_size": 100}))
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


def test_wall_time_sums_logged_intervals_and_skips_resume_gaps(tmp_path):
    write_run(tmp_path, [{"step": 10, "epoch": 0.5, "img_per_s": 100.0, "loss": 2.0, "time": 0},  # 10 × 100 / 100 = 10 s
                         {"step": 20, "epoch": 1.0, "img_per_s": 50.0, "loss": 1.5, "time": 9999}])  # 20 s, whatever the gap
    assert training_summary(tmp_path) == {"steps": 20, "wall_seconds": 30.0, "loss_first": 2.0, "loss_last": 1.5}
    assert training_summary(tmp_path, until_step=10) == {"steps": 10, "wall_seconds": 10.0, "loss_first": 2.0,
                                                          "loss_last": 2.0}


def test_a_torn_last_line_is_left_out_and_no_record_is_an_error(tmp_path):
    write_run(tmp_path, [{"step": 10, "epoch": 0.5, "img_per_s": 100.0, "loss": 2.0}], tail='{"step": 20, "ep')
    assert training_summary(tmp_path)["steps"] == 10  # a crash mid-write, as zoo add may meet
    with pytest.raises(VitscopeError, match="no records up to step 5"):
        training_summary(tmp_path, until_step=5)
