"""The choices vitscope's commands offer and their defaults, importing only the standard library.

``vitscope --help``, a command's ``--help`` and a usage error need these names before any model
runs. Kept here, the command line answers without importing torch and timm (seconds on a CPU;
``bench/cli_startup.py``); the modules that implement each choice import it from here.
"""

from __future__ import annotations

#: Model specs every command that loads a model takes (:func:`vitscope.models.load`).
SUPPORTED_SPECS = (
    "timm:NAME (pretrained timm weights, downloaded), random:NAME (random weights), "
    "zoo:NAME (a model vitscope trained and ships; `vitscope zoo` lists them), "
    "hf:REPO_ID or hf:/local/dir (Hugging Face ViT, ViT-MAE, DINOv2, DINOv2 with registers), "
    "or PATH[@ARCH] to a checkpoint file, format detected from its keys: MoCo v3 (.pth.tar), "
    "SimMIM, MAE (pretrained or fine-tuned), DINO (full or backbone), BEiT (pretrained or fine-tuned), "
    "timm state dict, .safetensors, vitscope's own; @ARCH names the timm architecture "
    "(else inferred from shapes, standard heads for the width); a timm NAME or ARCH may carry keywords: "
    "random:vit_tiny_patch4_32(depth=6), PATH@vit_tiny_patch4_32(depth=6)"
)

#: Layer types of Shekhar et al. Figs. 1, 2, 5, 6 and the taps each reads
#: (:mod:`vitscope.comparison.grams`; ``attn_out`` is ``attn_res − block_in``).
LAYER_TYPES: dict[str, tuple[str, ...]] = {
    "block": ("block_out",),
    "qkv": ("qkv",),
    "ln1": ("ln1",),
    "fc1": ("fc1",),
    "attn_out": ("block_in", "attn_res"),
}

#: Per-image features CKA forms from a layer's tokens (:func:`vitscope.metrics.tokens.reduce_tokens`).
TOKEN_REDUCTIONS: tuple[str, ...] = ("flatten", "cls", "gap", "gap_noprefix")

#: Token features the probes read at every block (:mod:`vitscope.eval.features`).
TOKEN_FEATURES: tuple[str, ...] = ("cls", "gap", "gap_noprefix")

#: Weighted k-NN vote (Wu et al. 2018, as DINO's eval_knn): k neighbours, weights exp(sim / T).
KNN_K = 20
KNN_TEMPERATURE = 0.07

#: Optimisers of the linear probes (:mod:`vitscope.eval.linear_probe`).
PROBE_OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")

#: Centre frequencies of the band-limited noise, in units of π (Park et al. Fig. 8 right): 0, 0.1π, ..., π.
NOISE_FREQUENCIES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
