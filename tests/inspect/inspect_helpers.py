"""Helpers shared by the inspect tests."""

import json
import sys

import pytest

from vitscope.cli import main

MODEL = "random:vit_tiny_patch4_32"  # 12 blocks, 3 heads, 8×8 grid of 4 px patches


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["vitscope", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def explorer_data(path):
    """The JSON the explorer page embeds."""
    page = path.read_text()
    start = page.index('<script type="application/json" id="data">') + len('<script type="application/json" id="data">')
    return json.loads(page[start:page.index("</script>", start)].replace("<\\/", "</"))


