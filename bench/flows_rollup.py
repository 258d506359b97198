"""The report from rollups vs from raw flows (one process, and a local 2-node Ray cluster),
and what writing rollups costs at ingest (issue 20).

    PYTHONPATH=src .venv/bin/python bench/flows_rollup.py --flows 10000000 --store /tmp/tl-rollup/store

Steps, each a fresh subprocess measured with getrusage (CPU s of every thread, peak RSS):
1. ingest cost: simulate --small flows with and without rollups, alternating A B A B;
2. simulate --flows for 2025Q4 and --previous x as many for 2025Q3 with rollups (kept in
   --store), then compact (one file per day and level, the monthly peer tables);
3. the report (write_report) from rollups, from raw on one process, from raw on a local
   Ray cluster of two 1-CPU worker nodes (driver figures, and the Ray processes' CPU and
   peak RSS from RUSAGE_CHILDREN after the cluster stopped); every report.json equal;
4. sizes on disk: raw day partitions vs each rollup level.
Prints one JSON object; the load average is sampled before and after every step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIM = r"""
import json, resource, sys, time
from trunkline.flows.enrich import Enricher
from trunkline.flows.rollup import Rollups
from trunkline.flows.simulate import PREVIOUS_SHIFT, simulate
from trunkline.flows.stats import Quarter
from trunkline.flows.store import FlowStore
root, n, data, roll = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
prev = float(sys.argv[5]) if len(sys.argv) > 5 else 0.5
parts = int(sys.argv[6]) if len(sys.argv) > 6 else 1  # one quarter in parts: bounded memory
e = Enricher.from_dir(data)
q = Quarter.parse("2025Q4")
store = FlowStore(root, rollups=Rollups(e) if roll else None)
r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
n_prev = int(n * prev)
for part in range(parts):
    if n_prev:
        simulate(q.prev(), store, e, flows=n_prev // parts, seed=7, drift=0.5, shift=PREVIOUS_SHIFT, part=part)
    simulate(q, store, e, flows=n // parts, seed=7, part=part)
    print(json.dumps({"part": part, "s": time.perf_counter() - t}), file=sys.stderr, flush=True)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime,
                  "peak_rss_mb": r1.ru_maxrss / 1024, "flows": n // parts * parts + n_prev // parts * parts}))
"""

COMPACT = r"""
import json, resource, sys, time
from trunkline.flows import maintain, scan
from trunkline.flows.store import FlowStore
store = FlowStore(sys.argv[1])
r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
n = maintain.compact(store, scan.raw_days(store))
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime,
                  "peak_rss_mb": r1.ru_maxrss / 1024, **n}))
"""

REPORT = r"""
import json, resource, sys, time
from trunkline.flows.enrich import Enricher
from trunkline.flows.report import write_report
from trunkline.flows.stats import Quarter
from trunkline.flows.store import FlowStore
root, out, data, source, quarter = sys.argv[1:6]
e = Enricher.from_dir(data)
kw = {"source": source}
cm = None
if source == "ray":
    from trunkline.testing.ray_cluster import local_ray_cluster
    cm = local_ray_cluster(("a", "b"), object_store_memory=300 << 20)
    cm.__enter__()
    kw = {"source": "raw", "ray": "auto", "enrich_args": {"data_dir": data}}
r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
rep = write_report(FlowStore(root), Quarter.parse(quarter), e, out, **kw)
wall = time.perf_counter() - t
r1 = resource.getrusage(resource.RUSAGE_SELF)
if cm is not None:
    cm.__exit__(None, None, None)
c = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall_s": wall, "cpu_s": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime,
                  "peak_rss_mb": r1.ru_maxrss / 1024, "children_cpu_s": c.ru_utime + c.ru_stime,
                  "children_peak_rss_mb": c.ru_maxrss / 1024, "flows": rep["totals"]["flows"],
                  "source": rep["source"]}))
"""


def load() -> float:
    return os.getloadavg()[0]


def run(code: str, *args: str, timeout: float) -> dict:
    la0 = load()
    p = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode:
        raise RuntimeError(p.stderr[-3000:])
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["load_before"], out["load_after"] = round(la0, 2), round(load(), 2)
    return out


def du(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*.parquet")) if p.exists() else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=10_000_000, help="2025Q4 flows (2025Q3 gets half)")
    ap.add_argument("--small", type=int, default=1_000_000, help="flows of the ingest A/B")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--previous", type=float, default=0.5, help="2025Q3's flows as a fraction of --flows")
    ap.add_argument("--parts", type=int, default=1, help="simulate each quarter in this many parts (memory)")
    ap.add_argument("--report-rounds", type=int, default=1,
                    help="alternate the reports (rollups raw ray, rollups raw ray, ...) this many times")
    ap.add_argument("--store", default="/tmp/tl-rollup/store")
    ap.add_argument("--enrich-data", default=str(Path(__file__).resolve().parents[2] / "shared/data/enrich"))
    ap.add_argument("--skip", default="", help="comma list of steps to skip: ingest,sim,compact,rollups,raw,ray")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--quarter", default="2025Q4", help="the report's quarter (2025Q3: the simulated previous quarter alone)")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    base = Path(a.store).parent
    base.mkdir(parents=True, exist_ok=True)
    res: dict = {"flows": a.flows, "small": a.small, "cpus": os.cpu_count()}
    if "ingest" not in skip:
        ab: dict[str, list] = {"with_rollups": [], "without": []}
        for _ in range(a.rounds):
            for name, roll in (("without", "0"), ("with_rollups", "1")):
                d = base / f"ab-{name}"
                shutil.rmtree(d, ignore_errors=True)
                ab[name].append(run(SIM, d, a.small, a.enrich_data, roll, timeout=a.timeout))
                shutil.rmtree(d, ignore_errors=True)
        res["ingest_ab"] = ab
        res["ingest_median"] = {k: {m: statistics.median(x[m] for x in v) for m in ("wall_s", "cpu_s", "peak_rss_mb")}
                                for k, v in ab.items()}
        print(json.dumps(res["ingest_median"]), file=sys.stderr)
    store = Path(a.store)
    if "sim" not in skip:
        shutil.rmtree(store, ignore_errors=True)
        res["simulate"] = run(SIM, store, a.flows, a.enrich_data, "1", a.previous, a.parts, timeout=a.timeout)
        print(json.dumps(res["simulate"]), file=sys.stderr)
    if "compact" not in skip:
        res["compact"] = run(COMPACT, store, timeout=a.timeout)
        print(json.dumps(res["compact"]), file=sys.stderr)
    raw = sum(du(p) for p in store.glob("day=*"))
    res["size"] = {"raw_bytes": raw, **{lv: du(store / f"rollup={lv}") for lv in ("5m", "1h", "1d", "peers", "peers_1mo", "elephants_1q", "mover")}}
    res["size"]["rollup_fraction"] = {k: v / raw for k, v in res["size"].items() if k != "raw_bytes" and raw}
    reports = {}
    for source in [s for _ in range(a.report_rounds) for s in ("rollups", "raw", "ray")]:
        if source in skip:
            continue
        out = base / f"report-{source}"
        res.setdefault(f"report_{source}", []).append(
            run(REPORT, store, out, a.enrich_data, source, a.quarter, timeout=a.timeout))
        print(source, json.dumps(res[f"report_{source}"][-1]), file=sys.stderr)
        r = json.loads((out / "report.json").read_text())
        for k in ("generated_at", "source", "files"):
            r.pop(k, None)
        reports[source] = json.dumps(r, sort_keys=True)
        print(json.dumps(res), file=sys.stderr)  # what is measured so far, if a later step dies
    res["reports_equal"] = len(set(reports.values())) <= 1
    for source in ("rollups", "raw", "ray"):
        runs = res.get(f"report_{source}")
        if runs:
            res[f"median_{source}"] = {m: statistics.median(x[m] for x in runs)
                                       for m in ("wall_s", "cpu_s", "peak_rss_mb")}
    res["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
