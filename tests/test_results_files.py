"""Results files: checked on every read (kind, schema version, the keys readers rely on), one line when wrong."""

from __future__ import annotations

import json

import pytest

from vitscope.errors import VitscopeError
from vitscope.results import (ANALYSIS, FINETUNE, SCHEMA_VERSION, missing_keys, read_analysis,
                              read_results, write_results)

LAYOUT = {"model": {"spec": None}, "models?": {"[]": {"spec": None}}, "linear?": {"*": {"accuracy": None}}}


def test_missing_keys_names_each_missing_path():
    assert missing_keys({"model": {"spec": None}}, LAYOUT) == []  # present, even null
    assert missing_keys({}, LAYOUT) == ["model"]
    assert missing_keys({"model": None}, LAYOUT) == ["model"]  # null where an object belongs
    assert missing_keys({"model": {}}, LAYOUT) == ["model.spec"]
    assert missing_keys({"model": {"spec": 1}, "models": [{"spec": 1}, {}]}, LAYOUT) == ["models[1].spec"]
    assert missing_keys({"model": {"spec": 1}, "models": {"spec": 1}}, LAYOUT) == ["models (a list)"]
    assert missing_keys({"model": {"spec": 1}, "linear": {"cls": {"accuracy": []}, "gap": {}}}, LAYOUT) == \
        ["linear.gap.accuracy"]
    assert missing_keys([], LAYOUT) == ["the file (an object)"]


def analysis(**extra) -> dict:
    return {"kind": ANALYSIS, "model": {"spec": "random:x"},
            "metrics": {"similarity": {"heads_cosine": [1.0], "depth_cosine": [1.0], "tokens_cosine": [1.0]}},
            **extra}


def test_written_results_read_back_with_the_schema_version(tmp_path):
    write_results(tmp_path / "results.json", analysis())
    r = read_analysis(tmp_path)
    assert r["schema_version"] == SCHEMA_VERSION and r["metrics"]["similarity"]["heads_cosine"] == [1.0]


def test_file_from_before_schema_versions_is_read_when_complete(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(analysis()))  # no schema_version: version 0
    assert read_results(tmp_path / "results.json", ANALYSIS, "report")["kind"] == ANALYSIS
    incomplete = analysis()
    del incomplete["metrics"]["similarity"]["depth_cosine"]
    (tmp_path / "results.json").write_text(json.dumps(incomplete))
    assert read_results(tmp_path / "results.json", ANALYSIS, "findings")  # findings reads no similarity key
    with pytest.raises(VitscopeError, match=r"lacks metrics\.similarity\.depth_cosine .*schema version 0"):
        read_results(tmp_path / "results.json", reader="report")


@pytest.mark.parametrize("content, message", [
    ('{"kind": "vitscope-analysis", "model": {"sp', r"is not valid JSON \(.* at line 1; truncated\?\)"),
    ("", "is not valid JSON"),
    (json.dumps(analysis(schema_version=SCHEMA_VERSION + 1)),
     f"has results schema version {SCHEMA_VERSION + 1}, newer than this vitscope reads \\({SCHEMA_VERSION}\\)"),
    (json.dumps(analysis(schema_version="1")), "has schema_version '1', not a whole number"),
    (json.dumps({"kind": "something-else"}), r"is not a vitscope-analysis results file \(its kind is 'something-else'\)"),
    (json.dumps([1, 2]), "is not a vitscope-analysis results file"),
    (json.dumps({"kind": ANALYSIS, "metrics": {}}), "lacks model "),
])
def test_bad_results_file_is_one_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(VitscopeError, match=message) as e:
        read_analysis(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_kind_comes_from_the_file_name_where_the_file_has_none(tmp_path):
    (tmp_path / "finetune.json").write_text(json.dumps({"accuracy": 0.5, "history": []}))
    assert read_results(tmp_path / "finetune.json", reader="findings")["accuracy"] == 0.5
    (tmp_path / "finetune.json").write_text(json.dumps({"history": []}))
    with pytest.raises(VitscopeError, match=f"lacks accuracy .*a {FINETUNE} file"):
        read_results(tmp_path / "finetune.json", reader="findings")
    (tmp_path / "other.json").write_text(json.dumps({"accuracy": 0.5}))
    with pytest.raises(VitscopeError, match="is not a vitscope results file"):
        read_results(tmp_path / "other.json")
