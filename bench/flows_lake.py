"""Benchmark of the flow lake (issue 20): ``flows simulate`` then ``flows report`` of the
same quarter into a local store and into an S3 prefix on the embedded SeaweedFS, side by
side (A B A B ..., medians), each command a measured child process (wall, its own CPU,
peak RSS), and the S3 server's CPU over the same step read from /proc.

    .venv/bin/python bench/flows_lake.py --flows 3000000 --rounds 2 --scratch /tmp/tl-bench-lake

Needs ../shared/data/enrich (the simulator draws real ASNs' addresses). Prints a Markdown
table and one JSON line; the scratch directory is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import run_measured  # noqa: E402

from trunkline.embedded_s3 import EmbeddedS3  # noqa: E402
from trunkline.flows.store import FlowStore  # noqa: E402

CLI = [sys.executable, "-m", "trunkline.cli.main", "flows"]


def proc_cpu_s(pid: int) -> float:
    """user + sys seconds of a process and its reaped children (/proc/PID/stat)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in f[11:15]) / tck


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def diff(a, b, path=""):
    """(path, a, b) for each leaf where two report dicts differ (floats: by > 1e-12)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            yield from diff(a.get(k), b.get(k), f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from diff(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        # DuckDB's parallel sums of doubles depend on the order rows arrive in: the same
        # local store read twice differs in the 15th digit too
        if abs(a - b) > 1e-12 * max(abs(a), abs(b)):
            yield path, a, b
    elif a != b:
        yield path, a, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=3_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quarter", default="2025Q4")
    ap.add_argument("--scratch", default="/tmp/tl-bench-lake")
    ap.add_argument("--timeout", type=float, default=300.0, help="per command (seconds)")
    a = ap.parse_args()
    scratch = Path(a.scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    rows: dict[tuple[str, str], list[dict]] = {}
    load = [os.getloadavg()]
    diffs: list[int] = []
    try:
        with EmbeddedS3(data_dir=scratch / "weed", buckets=("lake",)) as srv:
            os.environ.update({**srv.env, "TRUNKLINE_CONFIG": "/nonexistent"})
            env = dict(os.environ)
            for r in range(a.rounds):
                order = ("local", "s3") if r % 2 == 0 else ("s3", "local")
                for kind in order:
                    store = (str(scratch / f"local-{r}") if kind == "local"
                             else f"s3://lake/round-{r}")
                    for step, argv in (
                        ("simulate", [*CLI, "simulate", "--quarter", a.quarter, "--out", store,
                                      "--flows", str(a.flows)]),
                        ("report", [*CLI, "report", "--store", store, "--quarter", a.quarter,
                                    "--out", str(scratch / f"rep-{kind}-{r}")]),
                    ):
                        srv_cpu0 = proc_cpu_s(srv.proc.pid)
                        m = run_measured(argv, env=env, timeout=a.timeout,
                                         log_dir=scratch / "logs", tag=f"{kind}-{step}-{r}")
                        srv_cpu = proc_cpu_s(srv.proc.pid) - srv_cpu0
                        if m.exit_code != 0:
                            print(f"{kind} {step} failed: {m.last_err_line}", file=sys.stderr)
                            return 1
                        rows.setdefault((kind, step), []).append(
                            {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "rss_mib": m.maxrss_mib,
                             "server_cpu_s": srv_cpu if kind == "s3" else 0.0})
                        print(f"round {r} {kind:5} {step:8} wall {m.wall_s:6.1f} s  cpu "
                              f"{m.cpu_s:6.1f} s  rss {m.maxrss_mib:6.0f} MiB  server cpu "
                              f"{srv_cpu:5.1f} s  load {os.getloadavg()[0]:.2f}", flush=True)
                        load.append(os.getloadavg())
                    if kind == "local":
                        size_local = du(Path(store))
                    else:
                        size_s3 = sum(e.size for e in FlowStore(store).listing().entries)
                reps = [json.loads((scratch / f"rep-{k}-{r}" / "report.json").read_text())
                        for k in ("local", "s3")]
                for rep in reps:
                    rep.pop("generated_at", None)
                d = list(diff(reps[0], reps[1]))
                diffs.append(len(d))
                print(f"round {r}: reports equal: {not d}" + (f"; {len(d)} differences "
                      f"(local, s3): {d[:8]}" if d else ""), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    med = {f"{k}-{s}": {f: statistics.median(x[f] for x in v) for f in v[0]}
           for (k, s), v in rows.items()}
    print(f"\n{a.flows:,} flows (+{a.flows // 2:,} previous quarter), {a.rounds} rounds "
          f"A B / B A, medians; load average 1 min {min(x[0] for x in load):.2f}.."
          f"{max(x[0] for x in load):.2f}\n")
    print("| store | step | wall s | CPU s (command) | peak RSS MiB | S3 server CPU s |")
    print("|---|---|---:|---:|---:|---:|")
    for key, v in med.items():
        kind, step = key.split("-")
        print(f"| {kind} | {step} | {v['wall_s']:.1f} | {v['cpu_s']:.1f} | {v['rss_mib']:.0f} "
              f"| {v['server_cpu_s']:.1f} |")
    print(json.dumps({"flows": a.flows, "rounds": a.rounds, "medians": med,
                      "loadavg": load, "local_store_bytes": size_local,
                      "s3_store_bytes": size_s3, "report_differences": diffs, "time": time.strftime("%F %TZ", time.gmtime())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
