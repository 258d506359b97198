"""The local walk of one flat folder: time and peak memory (issue 18).

    python bench/walk_memory.py --files 300000 --base-src /tmp/base/src --rounds 2

Method. ``--files`` empty files are made in one folder under ``--root`` (tmpfs by
default, so the disk does not set the time); each round runs, in a fresh interpreter per
tree (this one's ``src`` and, with ``--base-src``, another), ``trunkline.storage.local.walk``
over the folder three times, and prints the best time and the process's peak RSS. The
names of a folder are all held while it is walked (they are sorted into S3's order), so
the peak grows with the largest folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import resource, sys, time
from trunkline.storage.local import walk
best = 9e9
for _ in range(3):
    t = time.perf_counter()
    n = sum(1 for _ in walk(sys.argv[1]))
    best = min(best, time.perf_counter() - t)
print(n, round(best, 3), round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=300_000)
    ap.add_argument("--root", default="/dev/shm")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--base-src", default=None)
    a = ap.parse_args()
    trees = {"this": str(Path(__file__).resolve().parent.parent / "src")}
    if a.base_src:
        trees["base"] = str(Path(a.base_src).resolve())
    with tempfile.TemporaryDirectory(prefix="tl-walk-", dir=a.root) as d:
        for i in range(a.files):
            with open(os.path.join(d, f"shard-{i:08d}.tar"), "wb"):
                pass
        print("| tree | round | files | walk s (best of 3) | peak RSS MiB |")
        print("| --- | --- | --- | --- | --- |")
        for r in range(a.rounds):
            for name, src in trees.items():
                out = subprocess.run([sys.executable, "-c", CHILD, d], capture_output=True,
                                     text=True, env=dict(os.environ, PYTHONPATH=src), check=True)
                n, best, rss = out.stdout.split()
                print(f"| {name} | {r} | {n} | {best} | {rss} |", flush=True)


if __name__ == "__main__":
    main()
