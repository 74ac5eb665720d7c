"""The C allocator under PyTorch's CPU tensors: keep freed blocks for reuse (glibc only).

A timm ViT's unfused attention path (the one the ``attn`` tap needs) creates and frees
several ``[B, H, N, N]`` tensors per block, 15 MB each for ViT-Ti at batch 32. glibc
serves blocks over its mmap threshold with ``mmap`` and gives freed heap tops back to the
OS past its trim threshold, so these transients are page-faulted and zeroed afresh in
every block: on the 2-core development machine that more than doubled the minor page
faults of a forward pass and cost more than the attention statistics themselves
(``bench/analyze_overhead.py --default-malloc``, docs/analysis.md).

Imports no torch, so the command line can call it before anything is allocated.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters of glibc's malloc.h
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling on 64-bit: blocks above it are always mmap'ed
TRIM_THRESHOLD = 2**31 - 1  # the largest int: the heap top is never trimmed
KEEP_MALLOC_ENV = "VITSCOPE_KEEP_MALLOC"


def retain_freed_memory() -> bool:
    """Raise glibc's mmap threshold to 32 MiB and its trim threshold out of reach.

    Blocks of up to 32 MiB then come from the heap and, once freed, stay there for the next
    allocation instead of going back to the OS; the process keeps its peak heap in exchange.
    A process-wide setting: the ``vitscope`` command line calls it once at start, a library
    user may call it too. Does nothing and returns False off Linux/glibc (macOS, Windows,
    musl), when ``VITSCOPE_KEEP_MALLOC=1`` is set, or when glibc refuses a value; returns
    True when both thresholds were set.
    """
    if os.environ.get(KEEP_MALLOC_ENV, "") not in ("", "0") or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
