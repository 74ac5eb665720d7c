import ctypes
import os
import subprocess
import sys
import textwrap

import pytest

from vitscope.allocator import KEEP_MALLOC_ENV, retain_freed_memory

GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")

# In a fresh interpreter: malloc 20 MB, free it, malloc 20 MB again; mallinfo2 says whether the
# block was mmap'ed (hblks) and whether the heap kept the freed memory (arena).
PROBE = textwrap.dedent("""
    import ctypes, sys
    from vitscope.allocator import retain_freed_memory
    applied = retain_freed_memory() if sys.argv[1] == "1" else False
    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = MallInfo2
    before = libc.mallinfo2().hblks
    p = libc.malloc(20 * 2**20)
    mmapped = libc.mallinfo2().hblks - before
    libc.free(p)
    kept = libc.mallinfo2().arena >= 20 * 2**20
    print(applied, mmapped, kept)
""")


def probe(apply: bool, env: dict[str, str] | None = None) -> str:
    env = {**os.environ, **(env or {})}
    env.pop("MALLOC_MMAP_THRESHOLD_", None), env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return subprocess.run([sys.executable, "-c", PROBE, "1" if apply else "0"], env=env, check=True,
                          capture_output=True, text=True).stdout.split()


@pytest.mark.skipif(not (GLIBC and hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")), reason="needs glibc >= 2.33")
def test_freed_blocks_stay_in_the_heap():
    # glibc's default: a 20 MB block is mmap'ed and handed back on free (the page faults of #10)
    assert probe(apply=False) == ["False", "1", "False"]
    # retained: it comes from the heap, and the heap keeps it after free for the next block
    assert probe(apply=True) == ["True", "0", "True"]
    assert probe(apply=True, env={KEEP_MALLOC_ENV: "1"}) == ["False", "1", "False"]  # the opt-out


def test_opt_out_and_other_platforms(monkeypatch):
    monkeypatch.setenv(KEEP_MALLOC_ENV, "1")
    assert retain_freed_memory() is False
    monkeypatch.delenv(KEEP_MALLOC_ENV)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert retain_freed_memory() is False
