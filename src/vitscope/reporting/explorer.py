"""``explorer.html``: one self-contained page to click through a model's attention.

The reader picks an image, a block and a head (or the mean over heads) and clicks a patch;
the page draws that query's attention over the image and shows the block/head's NMI and
attention distance for that image and averaged over the page's images. Everything is
inline: images as PNG data URIs, attention as base64 uint8 (each row scaled to its own
maximum), script and style in the page; no network, no server.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vitscope.results import to_plain


@dataclass
class ExplorerImage:
    """One image of the page: model-input pixels, quantised attention and per-head numbers.

    ``attention``: uint8 ``[L, H', P, P]`` with ``H'`` = heads + 1 (last = mean over heads)
    or 1 (the mean only), each row scaled to its maximum; ``peak``: float32 ``[L, H', P]``,
    those maxima; ``nmi`` and ``distance``: ``[L, H']`` for this image.
    """

    name: str
    pixels: np.ndarray  # [H, W, 3] uint8
    attention: np.ndarray
    peak: np.ndarray
    nmi: np.ndarray
    distance: np.ndarray


def png_data_uri(pixels: np.ndarray) -> str:
    """uint8 ``[H, W, 3]`` → ``data:image/png;base64,...``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _inferno() -> list[list[int]]:
    import matplotlib

    return (np.asarray(matplotlib.colormaps["inferno"](np.linspace(0, 1, 256)))[:, :3] * 255).round().astype(int).tolist()


SCRIPT = r"""
const D = JSON.parse(document.getElementById('data').textContent);
const $ = id => document.getElementById(id);
const bytes = b64 => Uint8Array.from(atob(b64), c => c.charCodeAt(0));
const att = D.images.map(im => bytes(im.attention));
const peaks = D.images.map(im => new Float32Array(bytes(im.peak).buffer));
const [GH, GW] = D.grid, P = GH * GW, HP = D.head_slots;
let query = [Math.floor(GH / 2), Math.floor(GW / 2)];
function fill(sel, labels) { sel.replaceChildren(...labels.map((t, i) => new Option(String(t), i))); }
fill($('image'), D.images.map(im => im.name));
fill($('block'), Array.from({length: D.depth}, (_, i) => `block ${i + 1}`));
fill($('head'), HP > 1 ? [...Array.from({length: HP - 1}, (_, i) => `head ${i + 1}`), 'mean over heads'] : ['mean over heads']);
$('head').value = HP - 1;
function fmt(x) { return x === null ? 'n/a' : x.toFixed(3); }
function draw() {
  const i = +$('image').value, b = +$('block').value, h = +$('head').value;
  $('img').src = D.images[i].src;
  const cv = $('heat'), ctx = cv.getContext('2d'), cw = cv.width / GW, ch = cv.height / GH;
  ctx.clearRect(0, 0, cv.width, cv.height);
  const row_id = (b * HP + h) * P + query[0] * GW + query[1], off = row_id * P;
  const row = att[i].subarray(off, off + P);
  for (let k = 0; k < P; k++) {
    const c = D.cmap[row[k]];
    ctx.fillStyle = `rgba(${c[0]},${c[1]},${c[2]},${D.alpha})`;
    ctx.fillRect((k % GW) * cw, Math.floor(k / GW) * ch, cw, ch);
  }
  ctx.strokeStyle = 'cyan'; ctx.lineWidth = 2;
  ctx.strokeRect(query[1] * cw + 1, query[0] * ch + 1, cw - 2, ch - 2);
  const im = D.images[i], mean = (key) => D.images.reduce((s, x) => s + x[key][b][h], 0) / D.images.length;
  $('query').textContent = `${query[0]},${query[1]}`;
  $('nmi').textContent = fmt(im.nmi[b][h]);
  $('nmi_mean').textContent = fmt(mean('nmi'));
  $('dist').textContent = fmt(im.distance[b][h]);
  $('dist_mean').textContent = fmt(mean('distance'));
  const top = row.indexOf(255);
  $('peak').textContent = `${peaks[i][row_id].toFixed(4)} at ${Math.floor(top / GW)},${top % GW} (uniform: ${(1 / P).toFixed(4)})`;
}
$('heat').addEventListener('click', ev => {
  const r = $('heat').getBoundingClientRect();
  const col = Math.min(GW - 1, Math.floor((ev.clientX - r.left) / r.width * GW));
  const rw = Math.min(GH - 1, Math.floor((ev.clientY - r.top) / r.height * GH));
  query = [rw, col];
  draw();
});
for (const id of ['image', 'block', 'head']) $(id).addEventListener('change', draw);
draw();
"""

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222}
#stage{position:relative;width:384px;height:384px;display:inline-block;vertical-align:top}
#stage img,#stage canvas{position:absolute;left:0;top:0;width:384px;height:384px;image-rendering:pixelated}
#stage canvas{cursor:crosshair}
#side{display:inline-block;margin-left:1.5em;vertical-align:top;font-size:.9em}
table{border-collapse:collapse}td{padding:2px 8px;border-bottom:1px solid #eee}select{margin:0 .6em .6em 0}
.note{color:#666;font-size:.8em;max-width:46em}
"""


def explorer_page(images: Sequence[ExplorerImage], *, grid: tuple[int, int], patch_size: tuple[int, int],
                  model: str, alpha: float = 0.6) -> str:
    """The explorer page of ``images``: one self-contained HTML file."""
    depth, slots = images[0].attention.shape[:2]
    data = {
        "grid": list(grid), "depth": depth, "head_slots": slots, "alpha": alpha, "cmap": _inferno(),
        "images": [{"name": im.name, "src": png_data_uri(im.pixels),
                    "attention": base64.b64encode(np.ascontiguousarray(im.attention, dtype=np.uint8)).decode(),
                    "peak": base64.b64encode(np.ascontiguousarray(im.peak, dtype="<f4")).decode(),
                    "nmi": to_plain(im.nmi), "distance": to_plain(im.distance)} for im in images],
    }
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    heads_note = ("each head and their mean" if slots > 1 else
                  "the mean over heads only (per-head maps were left out to keep the page small)")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>vitscope attention explorer</title>
<style>{STYLE}</style></head><body>
<h1 style="font-size:1.3em">Attention explorer: {html.escape(model)}</h1>
<div><label>image <select id="image"></select></label><label>block <select id="block"></select></label>
<label>head <select id="head"></select></label></div>
<div id="stage"><img id="img" alt="model input"><canvas id="heat" width="384" height="384"></canvas></div>
<div id="side"><table>
<tr><td>query patch (row,col)</td><td id="query"></td></tr>
<tr><td>largest weight of the map</td><td id="peak"></td></tr>
<tr><td>NMI, this image</td><td id="nmi"></td></tr><tr><td>NMI, mean of the page's images</td><td id="nmi_mean"></td></tr>
<tr><td>attention distance (px), this image</td><td id="dist"></td></tr>
<tr><td>attention distance (px), mean of the page's images</td><td id="dist_mean"></td></tr>
</table>
<p class="note">Click a patch to see its attention over the image (Park et al. Fig. 2): {heads_note}.
The {grid[0]}×{grid[1]} grid of {patch_size[0]}×{patch_size[1]} px patches of the model's input; prefix tokens
dropped and rows renormalised; each map drawn on its own scale, 0 to its largest weight (shown beside it;
1/{grid[0] * grid[1]} would be uniform attention). NMI and distance as in
<code>vitscope analyze</code> (Park et al. Figs. 3, 4), for the chosen block and head.</p></div>
<script type="application/json" id="data">{payload}</script>
<script>{SCRIPT}</script></body></html>
"""
    return page
