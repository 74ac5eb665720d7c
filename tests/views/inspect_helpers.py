"""Helpers shared by the inspect tests."""

import json

MODEL = "random:vit_tiny_patch4_32"  # 12 blocks, 3 heads, 8×8 grid of 4 px patches


def explorer_data(path):
    """The JSON the explorer page embeds."""
    page = path.read_text()
    start = page.index('<script type="application/json" id="data">') + len('<script type="application/json" id="data">')
    return json.loads(page[start:page.index("</script>", start)].replace("<\\/", "</"))


