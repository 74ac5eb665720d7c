"""How long the command line takes to answer ``--help``, a usage error and ``vitscope zoo``, against importing torch and timm.

    python bench/cli_startup.py [--repeats 7]

Each variant runs in a fresh interpreter, alternating within every repeat so a shared machine's
load affects them alike; the median wall time of each is printed, with its ratio to
``import torch, timm`` (what every command paid before its first line while the command modules
imported them for their option lists, :mod:`vitscope.choices`).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

VARIANTS = {
    "vitscope --help": [sys.executable, "-m", "vitscope", "--help"],
    "vitscope analyze --help": [sys.executable, "-m", "vitscope", "analyze", "--help"],
    "usage error (vitscope probe --bogus)": [sys.executable, "-m", "vitscope", "probe", "--bogus"],
    "vitscope zoo (the listing)": [sys.executable, "-m", "vitscope", "zoo"],
    "python -c 'import torch, timm'": [sys.executable, "-c", "import torch, timm"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, cmd in VARIANTS.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times[name].append(time.perf_counter() - t0)
    ref = statistics.median(times["python -c 'import torch, timm'"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:40s} {med:6.2f} s  ({med / ref:.2f}x import torch, timm)")


if __name__ == "__main__":
    main()
