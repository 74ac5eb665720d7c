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

``attn_logits`` fires right before ``attn``, and only where the tensor ``attn_drop`` receives
is the very output of the attention module's ``softmax`` (every timm ViT and BEiT); a model
that changes the probabilities in between (talking heads) does not fire it, and
:meth:`Taps.check` does not require it (``BEST_EFFORT_TAPS``): its consumers fall back to
``attn`` alone. It is read by a ``TorchFunctionMode`` (:class:`_SoftmaxSpy`) that is active
only while the attention module runs and records the input and output of its softmax; no
tensor is copied. With both, ``log a = s − logsumexp(s)`` needs no logarithm per weight.

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
    patch_size: tuple[int, int]

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]


def blocks_of(model: nn.Module) -> Sequence[nn.Module]:
    """The transformer blocks of a timm ``VisionTransformer``/``Beit`` (or similar)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or len(blocks) == 0:
        raise TapError(f"{type(model).__name__} has no `blocks`: not a timm ViT")
    return blocks


def vit_info(model: nn.Module) -> ViTInfo:
    """Read depth, heads, width and the patch grid off a timm ViT."""
    blocks = blocks_of(model)
    attn = getattr(blocks[0], "attn", None)
    if attn is None or not hasattr(attn, "num_heads"):
        raise TapError(f"{type(model).__name__}'s blocks have no timm attention module")
    pe = getattr(model, "patch_embed", None)
    if pe is None or getattr(pe, "grid_size", None) is None:
        raise TapError(f"{type(model).__name__} has no patch embedding with a fixed grid")
    embed_dim = int(getattr(model, "embed_dim", getattr(model, "num_features", 0)))
    return ViTInfo(
        depth=len(blocks),
        num_heads=int(attn.num_heads),
        embed_dim=embed_dim,
        num_prefix_tokens=int(getattr(model, "num_prefix_tokens", 1)),
        grid_size=tuple(int(g) for g in pe.grid_size),  # type: ignore[arg-type]
        patch_size=tuple(int(p) for p in pe.patch_size),  # type: ignore[arg-type]
    )


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
    """Records ``(input, output)`` of the last softmax over the last dimension of a 4-D tensor
    called while the mode is active (entered and left around one attention module's forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: tuple[torch.Tensor, torch.Tensor] | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _SOFTMAX and isinstance(out, torch.Tensor) and out.ndim == 4:
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if dim in (-1, 3):
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
        blocks = blocks_of(model)
        self.layers = tuple(range(len(blocks))) if layers is None else tuple(layers)
        self._handles: list[Any] = []
        self._fused: dict[nn.Module, bool] = {}
        self._fired: set[tuple[int, str]] = set()

    # -- installing ----------------------------------------------------------------
    def __enter__(self) -> Taps:
        blocks = blocks_of(self.model)
        try:
            for i in self.layers:
                self._install(i, blocks[i])
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

    def _install(self, i: int, block: nn.Module) -> None:
        want = self.taps
        add = self._handles.append

        def post(tap: str, fn: Callable[[torch.Tensor], torch.Tensor] = lambda t: t):
            return lambda _m, _a, out: self._emit(i, tap, fn(out))

        def pre(tap: str, fn: Callable[[torch.Tensor], torch.Tensor] = lambda t: t):
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

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.unflatten(-1, (heads, t.shape[-1] // heads))

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
            spy = _SoftmaxSpy() if "attn_logits" in want else None
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
                if seen is not None and seen[1] is args[0]:  # attn_drop gets the softmax's own output
                    self._emit(i, "attn_logits", seen[0])
                if "attn" in want:
                    self._emit(i, "attn", out)

            add(drop.register_forward_hook(at_drop))

    # -- checking ------------------------------------------------------------------
    def check(self) -> None:
        """Raise if a requested tap did not fire since the last check; then reset."""
        fired, self._fired = self._fired, set()
        for i in self.layers:
            for tap in sorted(self.taps - BEST_EFFORT_TAPS):
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
