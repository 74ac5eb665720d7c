"""Taps: forward hooks that expose per-block tensors of a timm ViT in one forward pass.

A *tap* is a named tensor inside every transformer block. Only the taps some consumer
asked for are hooked, and each captured tensor is handed to a callback straight away
(``callback(layer, tap, tensor)``), so a metric can reduce it and let it go before the
next block runs: attention probabilities of a ViT-B never exist for more than one layer.

===============  ==========================================  ===========================
tap              tensor                                      shape
===============  ==========================================  ===========================
``attn``         softmax attention probabilities             ``[B, H, N, N]``
``attn_logits``  the scores softmax turns into ``attn``     ``[B, H, N, N]``
                 (scaled ``q·kᵀ``, position bias, mask)
``block_in``     residual stream entering the block          ``[B, N, D]``
``attn_res``     residual stream right after attention       ``[B, N, D]``
                 (``x + attn(norm1(x))``, the input of norm2)
``block_out``    residual stream leaving the block           ``[B, N, D]``
``head_out``     per-head attention output ``attn @ v``      ``[B, N, H, D/H]``
``qkv``          query/key/value projection                  ``[B, N, 3·H·D/H]``
``ln1``          output of the first LayerNorm               ``[B, N, D]``
``fc1``          output of the MLP's first linear layer      ``[B, N, D_mlp]``
===============  ==========================================  ===========================

``N`` counts every token, prefix tokens (CLS, registers) first, as timm orders them.

Other ViT families are brought to these shapes here, so that every consumer reads one layout
(the table in docs/models.md says which families are supported and how):

* **CaiT**: its self-attention blocks carry the patch tokens only (the class token joins in
  the class-attention blocks, ``blocks_token_only``), so ``num_prefix_tokens`` is 0. Its
  talking-heads attention mixes the heads after the softmax (``proj_w``); ``attn`` is the
  softmax's output (probabilities), what ``attn_drop`` receives is not. The class-attention
  blocks are tapped as layers ``depth …`` (:attr:`ViTInfo.class_attention_depth`), when asked
  for by ``layers``, and offer the ``CLASS_ATTENTION_TAPS`` only: ``attn`` is ``[B, H, 1, 1 + P]``,
  the class token's attention over itself and the patches.
* **SAM** (NHWC tokens, no class token): ``block_in``, ``block_out`` and ``ln1`` ``[B, h, w, D]``
  are flattened to ``[B, h·w, D]``; in a windowed block (:attr:`ViTInfo.window_sizes`)
  ``head_out`` and ``qkv``, computed per window, are put back on the image grid (padding
  dropped), and ``attn`` is ``[B, W, H, T, T]``: ``W`` windows of the padded grid and
  ``T = window²`` positions, both row-major, padding included (:func:`window_valid`). A global
  block's ``attn`` is ``[B, H, N, N]``; ``attn_logits`` takes the same shapes.
* Attention across channels instead of tokens (XCiT) and blocks of two token layouts (ConViT)
  are refused (:data:`REFUSED`).
* Hybrid ViTs (a convolutional stem before the patch embedding): ``ViTInfo.patch_size`` is the
  pixels per token, the stem's stride times the patch size.

``attn_logits`` fires right before ``attn``, and only where the tensor ``attn_drop`` receives
is the very output of the attention module's ``softmax`` (every timm ViT and BEiT) or, for
talking heads (CaiT), that output mixed over heads; any other model that changes the
probabilities in between does not fire it, and :meth:`Taps.check` does not require it
(``BEST_EFFORT_TAPS``): its consumers fall back to ``attn`` alone. It is read by a
``TorchFunctionMode`` (:class:`_SoftmaxSpy`) that is active only while the attention module
runs and records the input and output of its softmax; no tensor is copied. With both,
``log a = s − logsumexp(s)`` needs no logarithm per weight.

Fused attention (``F.scaled_dot_product_attention``) never materialises the
probabilities, so neither a hook on ``softmax`` nor on ``attn_drop`` would fire. When
``attn`` or ``attn_logits`` is requested, the attention modules of the hooked blocks are
switched to timm's explicit path (``fused_attn = False``) for the duration of the
capture, and the probabilities are read at the output of ``attn_drop`` (identity in eval
mode). Relative position bias (BEiT) is added by timm before the softmax, so it is
included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

TAPS: tuple[str, ...] = ("attn", "attn_logits", "block_in", "attn_res", "block_out", "head_out", "qkv", "ln1", "fc1")

BEST_EFFORT_TAPS = frozenset({"attn_logits"})  # hooked when asked for, never required by check()

TapCallback = Callable[[int, str, torch.Tensor], None]

_SOFTMAX = frozenset({torch.softmax, torch.Tensor.softmax, F.softmax})


class TapError(RuntimeError):
    """A requested tap cannot be installed on, or never fired in, the model."""


@dataclass(frozen=True)
class ViTInfo:
    """What the metrics need to know about a ViT's token layout."""

    depth: int
    num_heads: int
    embed_dim: int
    num_prefix_tokens: int
    grid_size: tuple[int, int]
    patch_size: tuple[int, int]  # pixels per token (a hybrid's stem stride included)
    window_sizes: tuple[int, ...] = ()  # per block: attention window side in patches (SAM), 0 = global; () = all global
    class_attention_depth: int = 0  # class-attention blocks after the `depth` blocks (CaiT), tapped as layers depth…

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]


CLASS_ATTENTION_TAPS = frozenset({"attn", "attn_logits"})  # what a class-attention block offers

# families refused, by the class name of the model or of its blocks' attention: why
REFUSED = {
    "XCA": "has no token-to-token self-attention to analyse: its attention (XCiT's cross-covariance "
           "attention) is between feature channels, a [head dim x head dim] map per head, not between tokens",
    "ConVit": "has two token layouts: its class token joins the patch tokens after the gated positional "
              "self-attention blocks, and vitscope's per-layer metrics take one layout for every block",
}


def blocks_of(model: nn.Module) -> Sequence[nn.Module]:
    """The transformer blocks of a timm ``VisionTransformer``/``Beit`` (or similar)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or len(blocks) == 0:
        raise TapError(f"{type(model).__name__} has no `blocks`: not a timm ViT")
    return blocks


def class_attention_blocks(model: nn.Module) -> Sequence[nn.Module]:
    """CaiT's class-attention blocks (``blocks_token_only``), which follow ``blocks``; else none."""
    return tuple(getattr(model, "blocks_token_only", None) or ())


def refuse_unsupported(model: nn.Module) -> None:
    """Raise :class:`TapError` (one line, saying why) for a family in :data:`REFUSED`."""
    names = {type(model).__name__} | {type(getattr(b, "attn", None)).__name__ for b in blocks_of(model)}
    refused = sorted(names & REFUSED.keys())
    if refused:
        raise TapError(f"{type(model).__name__} {REFUSED[refused[0]]}")


def _pixels_per_token(patch_embed: nn.Module) -> tuple[int, int]:
    """Pixels per grid cell: the patch size, times the stride of a convolutional stem in a hybrid
    ViT (whose ``patch_size`` counts feature-map cells): timm's ``feat_ratio``."""
    ratio = getattr(patch_embed, "feat_ratio", None)
    size = ratio(as_scalar=False) if callable(ratio) else patch_embed.patch_size
    return int(size[0]), int(size[1])


def _nhwc(model: nn.Module) -> bool:
    """True when the patch embedding hands the blocks ``[B, h, w, D]`` maps (SAM), not token rows."""
    return getattr(getattr(model, "patch_embed", None), "output_fmt", None) == "NHWC"


def _prefix_tokens(model: nn.Module) -> int:
    """Prefix tokens in the sequence the blocks carry: none in CaiT's self-attention blocks (its class
    token joins later), else ``num_prefix_tokens``, else 1 with a class token and 0 without (SAM)."""
    if class_attention_blocks(model):
        return 0
    n = getattr(model, "num_prefix_tokens", None)
    return int(n) if n is not None else int(getattr(model, "cls_token", None) is not None)


def vit_info(model: nn.Module) -> ViTInfo:
    """Read depth, heads, width, the patch grid and the attention layout off a timm ViT."""
    blocks = blocks_of(model)
    refuse_unsupported(model)
    attn = getattr(blocks[0], "attn", None)
    if attn is None or not hasattr(attn, "num_heads"):
        raise TapError(f"{type(model).__name__}'s blocks have no timm attention module")
    pe = getattr(model, "patch_embed", None)
    if pe is None or getattr(pe, "grid_size", None) is None:
        raise TapError(f"{type(model).__name__} has no patch embedding with a fixed grid")
    embed_dim = int(getattr(model, "embed_dim", getattr(model, "num_features", 0)))
    windows = tuple(int(getattr(b, "window_size", 0) or 0) for b in blocks) if _nhwc(model) else ()
    return ViTInfo(
        depth=len(blocks),
        num_heads=int(attn.num_heads),
        embed_dim=embed_dim,
        num_prefix_tokens=_prefix_tokens(model),
        grid_size=tuple(int(g) for g in pe.grid_size),  # type: ignore[arg-type]
        patch_size=_pixels_per_token(pe),
        window_sizes=windows if any(windows) else (),
        class_attention_depth=len(class_attention_blocks(model)),
    )


def window_grid(grid_size: tuple[int, int], window: int) -> tuple[int, int]:
    """Windows along the height and along the width when a ``grid_size`` grid is padded to multiples
    of ``window`` (SAM's ``window_partition``)."""
    return -(-grid_size[0] // window), -(-grid_size[1] // window)


def window_valid(grid_size: tuple[int, int], window: int) -> torch.Tensor:
    """``[W, window²]`` bool: which positions of each window (both row-major) hold an image patch
    rather than SAM's zero padding at the bottom and right of the grid."""
    nh, nw = window_grid(grid_size, window)
    rows = torch.arange(nh * window).view(nh, 1, window, 1) < grid_size[0]
    cols = torch.arange(nw * window).view(1, nw, 1, window) < grid_size[1]
    return (rows & cols).reshape(nh * nw, window * window)


def window_tokens_to_grid(t: torch.Tensor, grid_size: tuple[int, int], window: int) -> torch.Tensor:
    """Per-window tokens ``[B·W, window², ...]`` (SAM's ``window_partition`` order) → ``[B, h·w, ...]``
    row-major on the image grid, padding dropped."""
    (h, w), (nh, nw) = grid_size, window_grid(grid_size, window)
    rest = t.shape[2:]
    x = t.reshape(-1, nh, nw, window, window, *rest).transpose(2, 3)
    return x.reshape(-1, nh * window, nw * window, *rest)[:, :h, :w].flatten(1, 2)


def _qkv_from_input(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """BEiT's attention calls ``F.linear`` with separate q/v biases, never ``qkv(x)``."""
    bias = None
    if getattr(attn, "q_bias", None) is not None:
        k_bias = getattr(attn, "k_bias", None)
        if k_bias is None:
            k_bias = torch.zeros_like(attn.v_bias)
        bias = torch.cat((attn.q_bias, k_bias, attn.v_bias))
    return F.linear(x, attn.qkv.weight, bias)


class _SoftmaxSpy(TorchFunctionMode):
    """Records ``(input, output)`` of the last softmax over the last dimension of a 4-D tensor (or a
    3-D one: SAM's ``[B·H, N, N]``) called while the mode is active (entered and left around one
    attention module's forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: tuple[torch.Tensor, torch.Tensor] | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _SOFTMAX and isinstance(out, torch.Tensor) and out.ndim in (3, 4):
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if dim in (-1, out.ndim - 1):
                self.seen = (args[0], out)
        return out

    def take(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        seen, self.seen = self.seen, None
        return seen


class Taps:
    """Context manager that hooks the requested taps of every (or some) block.

    >>> with Taps(model, {"attn", "block_out"}, callback):
    ...     model(images)

    ``callback(layer, tap, tensor)`` receives detached tensors. Call :meth:`check` after
    each forward pass: it raises :class:`TapError` naming the first requested tap that
    did not fire in a hooked block (``BEST_EFFORT_TAPS`` excepted), then clears the record
    for the next pass.
    """

    def __init__(
        self,
        model: nn.Module,
        taps: Iterable[str],
        callback: TapCallback,
        layers: Iterable[int] | None = None,
    ) -> None:
        self.model = model
        self.taps = frozenset(taps)
        unknown = self.taps - set(TAPS)
        if unknown:
            raise ValueError(f"unknown taps {sorted(unknown)}. Valid options are: {list(TAPS)}")
        self.callback = callback
        self._blocks = (*blocks_of(model), *class_attention_blocks(model))
        self._depth = len(blocks_of(model))
        self.layers = tuple(range(self._depth)) if layers is None else tuple(layers)
        self._handles: list[Any] = []
        self._fused: dict[nn.Module, bool] = {}
        self._fired: set[tuple[int, str]] = set()

    def wanted(self, layer: int) -> frozenset[str]:
        """The requested taps that ``layer`` offers: all in a self-attention block, the
        ``CLASS_ATTENTION_TAPS`` in a class-attention block (``layer ≥ depth``)."""
        return self.taps if layer < self._depth else self.taps & CLASS_ATTENTION_TAPS

    # -- installing ----------------------------------------------------------------
    def __enter__(self) -> Taps:
        try:
            for i in self.layers:
                self._install(i, self._blocks[i])
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for module, fused in self._fused.items():
            module.fused_attn = fused
        self._fused.clear()

    def _emit(self, layer: int, tap: str, t: torch.Tensor) -> None:
        self._fired.add((layer, tap))
        self.callback(layer, tap, t.detach())

    def _part(self, block: nn.Module, path: str, layer: int, tap: str) -> nn.Module:
        mod: Any = block
        for name in path.split("."):
            mod = getattr(mod, name, None)
            if mod is None:
                raise TapError(
                    f"tap '{tap}' needs `{path}` in block {layer} "
                    f"({type(block).__name__}), which it does not have"
                )
        return mod

    def _shapers(self, block: nn.Module) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """Per tap, what brings ``block``'s tensor to the layout of the module docstring: nothing
        for a ViT; for SAM's NHWC blocks, flattening, windows put back on the grid and the
        attention's ``[B·H, ...]`` rows split into images and heads."""
        if not _nhwc(self.model):
            return {}
        grid = tuple(int(g) for g in self.model.patch_embed.grid_size)
        heads, window = int(block.attn.num_heads), int(getattr(block, "window_size", 0) or 0)

        def flat(t: torch.Tensor) -> torch.Tensor:
            return t.flatten(1, 2)

        shapers = {"block_in": flat, "block_out": flat, "ln1": flat}
        if not window:
            n = grid[0] * grid[1]
            return {**shapers, "attn": lambda t: t.view(-1, heads, n, n)}
        nh, nw = window_grid(grid, window)  # type: ignore[arg-type]

        def to_grid(t: torch.Tensor) -> torch.Tensor:
            return window_tokens_to_grid(t, grid, window)  # type: ignore[arg-type]

        t_win = window * window
        return {**shapers, "qkv": to_grid, "head_out": to_grid,
                "attn": lambda t: t.view(-1, nh * nw, heads, t_win, t_win)}

    def _install(self, i: int, block: nn.Module) -> None:
        want = self.wanted(i)
        add = self._handles.append
        shapers = self._shapers(block)

        def identity(t: torch.Tensor) -> torch.Tensor:
            return t

        def post(tap: str, fn: Callable[[torch.Tensor], torch.Tensor] | None = None):
            fn = fn or shapers.get(tap, identity)
            return lambda _m, _a, out: self._emit(i, tap, fn(out))

        def pre(tap: str, fn: Callable[[torch.Tensor], torch.Tensor] | None = None):
            fn = fn or shapers.get(tap, identity)
            return lambda _m, args: self._emit(i, tap, fn(args[0]))

        if "block_in" in want:
            add(block.register_forward_pre_hook(pre("block_in")))
        if "block_out" in want:
            add(block.register_forward_hook(post("block_out")))
        if "attn_res" in want:
            add(self._part(block, "norm2", i, "attn_res").register_forward_pre_hook(pre("attn_res")))
        if "ln1" in want:
            add(self._part(block, "norm1", i, "ln1").register_forward_hook(post("ln1")))
        if "fc1" in want:
            add(self._part(block, "mlp.fc1", i, "fc1").register_forward_hook(post("fc1")))
        attn = self._part(block, "attn", i, "attn") if want & {"attn", "attn_logits", "head_out", "qkv"} else None
        if "head_out" in want:
            heads = int(attn.num_heads)
            proj = self._part(block, "attn.proj", i, "head_out")
            on_grid = shapers.get("head_out")

            def split(t: torch.Tensor) -> torch.Tensor:
                t = t.unflatten(-1, (heads, t.shape[-1] // heads))
                return t if on_grid is None else on_grid(t)

            add(proj.register_forward_pre_hook(pre("head_out", split)))
        if "qkv" in want:
            if getattr(attn, "q_bias", None) is not None:
                add(attn.register_forward_pre_hook(pre("qkv", lambda x: _qkv_from_input(attn, x))))
            else:
                qkv = self._part(block, "attn.qkv", i, "qkv")
                add(qkv.register_forward_hook(post("qkv")))
        if want & {"attn", "attn_logits"}:
            drop = self._part(block, "attn.attn_drop", i, "attn")
            if hasattr(attn, "fused_attn"):
                self._fused[attn] = attn.fused_attn
                attn.fused_attn = False
            talking = hasattr(attn, "proj_w")  # talking heads (CaiT): heads mixed after the softmax
            shape = shapers.get("attn")
            spy = _SoftmaxSpy() if "attn_logits" in want or talking else None
            if spy is not None:
                def enter(_m: nn.Module, _args: Any) -> None:
                    spy.__enter__()

                def leave(_m: nn.Module, _args: Any, _out: Any) -> None:
                    spy.__exit__(None, None, None)
                    spy.seen = None

                add(attn.register_forward_pre_hook(enter))
                add(attn.register_forward_hook(leave, always_call=True))  # also when the forward raises

            def at_drop(_m: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
                seen = spy.take() if spy is not None else None
                # attn_drop gets the softmax's own output, or (talking heads) its mix over heads
                if seen is not None and (talking or seen[1] is args[0]) and "attn_logits" in want:
                    self._emit(i, "attn_logits", seen[0] if shape is None else shape(seen[0]))
                probs = (seen[1] if seen is not None else None) if talking else out
                if "attn" in want and probs is not None:
                    self._emit(i, "attn", probs if shape is None else shape(probs))

            add(drop.register_forward_hook(at_drop))

    # -- checking ------------------------------------------------------------------
    def check(self) -> None:
        """Raise if a requested tap did not fire since the last check; then reset."""
        fired, self._fired = self._fired, set()
        for i in self.layers:
            for tap in sorted(self.wanted(i) - BEST_EFFORT_TAPS):
                if (i, tap) not in fired:
                    raise TapError(
                        f"tap '{tap}' of block {i} never fired: "
                        f"{type(self.model).__name__} computes it in a way vitscope cannot hook"
                    )


def needed_taps(consumers: Iterable[Any]) -> frozenset[str]:
    """Union of the ``taps`` attribute of every consumer (metric)."""
    out: set[str] = set()
    for c in consumers:
        out.update(c.taps)
    return frozenset(out)
