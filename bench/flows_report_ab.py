"""Side-by-side benchmark of the quarterly report: two source trees (old, new) build the
report over the same simulated store, alternating A B A B; medians of wall time, CPU
seconds (all threads) and peak RSS of each run.

    git -C . archive <old-commit> src | tar -x -C /tmp/old
    .venv/bin/python bench/flows_report_ab.py --old /tmp/old/src --new src --flows 10000000

The store (--flows for the quarter plus half as many for the previous one, as in
bench/flows_report.py) is simulated once with the new tree and kept in --store.
Each run is a fresh subprocess: load the enrichment data, then time write_report only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

RUN = r"""
import json, resource, sys, time
from trunkline.flows.enrich import Enricher
from trunkline.flows.report import write_report
from trunkline.flows.stats import Quarter
from trunkline.flows.store import FlowStore
e = Enricher.from_dir(sys.argv[3] if sys.argv[3] != "-" else None)
r0 = resource.getrusage(resource.RUSAGE_SELF)
t = time.perf_counter()
rep = write_report(FlowStore(sys.argv[1]), Quarter.parse("2025Q4"), e, sys.argv[2])
wall = time.perf_counter() - t
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": wall, "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
                  "peak_rss_mb": r1.ru_maxrss / 1024, "flows": rep["totals"]["flows"]}))
"""

SIM = r"""
import sys
from trunkline.flows.enrich import Enricher
from trunkline.flows.simulate import PREVIOUS_SHIFT, simulate
from trunkline.flows.stats import Quarter
from trunkline.flows.store import FlowStore
e = Enricher.from_dir(sys.argv[3] if sys.argv[3] != "-" else None)
n = int(sys.argv[2])
q = Quarter.parse("2025Q4")
store = FlowStore(sys.argv[1])
simulate(q.prev(), store, e, flows=n // 2, seed=7, drift=0.5, shift=PREVIOUS_SHIFT)
simulate(q, store, e, flows=n, seed=7)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, help="the old tree's src directory")
    ap.add_argument("--new", default="src")
    ap.add_argument("--flows", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--store", default="/tmp/tl-bench-ab/store")
    ap.add_argument("--out", default="/tmp/tl-bench-ab/report")
    ap.add_argument("--enrich-data", default="-")
    a = ap.parse_args()
    store = Path(a.store)
    env = dict(os.environ)
    if not store.is_dir():
        subprocess.run([sys.executable, "-c", SIM, str(store), str(a.flows), a.enrich_data],
                       env={**env, "PYTHONPATH": str(Path(a.new).resolve())}, check=True)
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    for i in range(a.rounds):
        for label, src in (("old", a.old), ("new", a.new)):
            out = subprocess.run([sys.executable, "-c", RUN, str(store), f"{a.out}-{label}", a.enrich_data],
                                 env={**env, "PYTHONPATH": str(Path(src).resolve())}, check=True,
                                 capture_output=True, text=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            runs[label].append(res)
            print(f"round {i + 1} {label}: {res}", flush=True)
    print("| tree | wall s (median) | runs | CPU s (median) | peak RSS MB (median) | flows |\n|---|---|---|---|---|---|")
    for label, rs in runs.items():
        walls = " / ".join(f"{r['wall_s']:.1f}" for r in rs)
        print(f"| {label} | {statistics.median(r['wall_s'] for r in rs):.1f} | {walls} | "
              f"{statistics.median(r['cpu_s'] for r in rs):.1f} | "
              f"{statistics.median(r['peak_rss_mb'] for r in rs):,.0f} | {rs[0]['flows']:,} |")
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
