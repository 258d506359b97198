"""Listing a large prefix (issue 18): what a ListObjectsV2 page costs the client.

    python bench/listing.py --keys 100000 --rounds 5
    python bench/listing.py --base-src /tmp/base/src      # also main's tree, alternating
    python bench/listing.py --sync --base-src /tmp/base/src   # an unchanged sync instead
    python bench/listing.py --s3-to-s3 --base-src /tmp/base/src   # between two prefixes

Method. ``--keys`` one-byte objects are written once under a scratch root and their
ListObjectsV2 pages (1,000 keys each) served by nginx on loopback (``nginx_origin.py``:
static pages, so the origin costs next to nothing and the client's parse shows). Each
round runs, in rotating order, ``trunkline ls -r`` of the prefix (this tree; with
``--base-src`` also that tree on PYTHONPATH, same interpreter) and ``s5cmd ls``, output to a
file; a run counts when it exits 0 and printed one line per key. Per run, measured by
the small launcher of ``common.run_measured`` around the child only: wall, user and
system CPU seconds. Medians; the load average before and after.

With ``--s3-to-s3``: an unchanged sync between two prefixes of the origin (the second's
files hard links of the first's, so sizes, times and ETags agree), both listings and the
join, nothing to move; no first sync.

With ``--rtt-ms N`` every tool reaches the origin through the WAN emulator
(``trunkline.testing.proxy``, its own process): N ms of round trip, as to a far store.

With ``--sync``: each tool first syncs the prefix into a local folder of its own (one GET
per key: a few minutes at 100,000 keys), then the rounds time an *unchanged* sync of it
(both listings, the join, nothing to move): ``trunkline sync`` (the base tree shares
trunkline's folder), ``s5cmd sync`` and ``rclone sync``. A run counts when it exits 0 and
moved nothing (trunkline: "copied 0"; s5cmd: no line printed; rclone ``-v``: "There was
nothing to transfer").
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from client_bound import tool_env
from common import _free_port, machine_info, median, run_measured, venv_bin
from nginx_origin import NginxOrigin, write_listing
from soak import PROXY_CHILD

BUCKET = "bench"
PREFIX = "many"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--base-src", default=None, help="tool 'base': this src/ dir")
    ap.add_argument("--sync", action="store_true", help="time an unchanged sync, not ls")
    ap.add_argument("--rtt-ms", type=float, default=0,
                    help="through the WAN emulator, this round trip")
    ap.add_argument("--s3-to-s3", action="store_true",
                    help="time an unchanged sync between two prefixes of the origin")
    ap.add_argument("--tools", default="trunkline,s5cmd,rclone",
                    help="peers beside trunkline (rclone only with --sync)")
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
        if a.s3_to_s3:
            a.sync = True
            twin = root / BUCKET / (PREFIX + "2")
            twin.mkdir()
            for f in base.iterdir():
                os.link(f, twin / f.name)
            write_listing(root, BUCKET, PREFIX + "2")
        want = a.tools.split(",")
        with NginxOrigin(root, BUCKET, _free_port()) as origin, _wan(origin, a.rtt_ms) as url0:
            env = tool_env(url0, work)
            s5 = [venv_bin("s5cmd"), "--endpoint-url", url0]
            if a.s3_to_s3:
                url2 = f"s3://{BUCKET}/{PREFIX}2/"
                tools = {"trunkline": [venv_bin("trunkline"), "sync", url, url2],
                         "s5cmd": [*s5, "sync", f"{url}*", url2],
                         "rclone": [venv_bin("rclone"), "sync", "-v", f"bench:{BUCKET}/{PREFIX}",
                                    f"bench:{BUCKET}/{PREFIX}2"]}
                base_cmd = [sys.executable, "-m", "trunkline.cli.main", *tools["trunkline"][1:]]
            elif a.sync:
                copies = {t: work / f"copy-{t}" for t in ("trunkline", "s5cmd", "rclone")}
                tools = {"trunkline": [venv_bin("trunkline"), "sync", url,
                                       str(copies["trunkline"])],
                         "s5cmd": [*s5, "sync", f"{url}*", f"{copies['s5cmd']}/"],
                         "rclone": [venv_bin("rclone"), "sync", "-v", f"bench:{BUCKET}/{PREFIX}",
                                    str(copies["rclone"])]}
                base_cmd = [sys.executable, "-m", "trunkline.cli.main", *tools["trunkline"][1:]]
            else:
                tools = {"trunkline": [venv_bin("trunkline"), "ls", "-r", url],
                         "s5cmd": [*s5, "ls", f"{url}*"]}
                base_cmd = [sys.executable, "-m", "trunkline.cli.main", "ls", "-r", url]
            tools = {t: c for t, c in tools.items() if t in want or t == "trunkline"}
            if a.base_src:
                tools["base"] = base_cmd
            if a.sync and not a.s3_to_s3:
                for t in [t for t in tools if t != "base"]:
                    m = run_measured(tools[t], env=env, log_dir=work / "logs", tag=f"{t}-first",
                                     timeout=3600)
                    print(f"{t} first sync: wall {m.wall_s:.1f} s, exit {m.exit_code}", flush=True)
            load0 = os.getloadavg()
            rows: dict[str, list] = {t: [] for t in tools}
            names = list(tools)
            for r in range(a.rounds):
                for t in names[r % len(names):] + names[:r % len(names)]:
                    tenv = dict(env, PYTHONPATH=str(Path(a.base_src).resolve())) \
                        if t == "base" else env
                    m = run_measured(tools[t], env=tenv, log_dir=work / "logs",
                                     tag=f"{t}-{r}", timeout=600)
                    out = work / "logs" / f"{t}-{r}.out"
                    lines = sum(1 for _ in out.open()) if out.exists() else -1
                    if a.sync:
                        ok = m.exit_code == 0 and _moved_nothing(
                            t, out.read_text(), (work / "logs" / f"{t}-{r}.err").read_text())
                    else:
                        ok = m.exit_code == 0 and lines == a.keys
                    print(f"{t} round {r}: wall {m.wall_s:.2f} s user {m.user_s:.2f} "
                          f"sys {m.sys_s:.2f} lines {lines} ok {ok}", flush=True)
                    if ok:
                        rows[t].append(m)
        print(f"\nload before: {load0}\nload after: {os.getloadavg()}\nmachine: {machine_info()}")
        print(f"| tool | wall s | user s | sys s | keys/s | user µs per key | peak RSS MiB |  "
              f"({a.keys:,} keys, {'unchanged sync s3 to s3' if a.s3_to_s3 else 'unchanged sync' if a.sync else 'ls'}, medians of {a.rounds})")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for t, ms in rows.items():
            if not ms:
                print(f"| {t} | failed | | | | | |")
                continue
            w, u, s, rss = (median([getattr(m, k) for m in ms])
                            for k in ("wall_s", "user_s", "sys_s", "maxrss_mib"))
            print(f"| {t} | {w:.2f} | {u:.2f} | {s:.2f} | {a.keys / w:,.0f} | "
                  f"{u / a.keys * 1e6:.1f} | {rss:.0f} |")


@contextlib.contextmanager
def _wan(origin: NginxOrigin, rtt_ms: float) -> Iterator[str]:
    """The origin's URL, through the WAN emulator where ``rtt_ms`` asks for one."""
    if not rtt_ms:
        yield origin.endpoint_url
        return
    proxy = subprocess.Popen([sys.executable, "-c", PROXY_CHILD, str(origin.port),
                              str(rtt_ms / 2000), str(64 << 20), "0"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield f"http://127.0.0.1:{proxy.stdout.readline().strip()}"  # type: ignore[union-attr]
    finally:
        proxy.stdin.close()  # type: ignore[union-attr]
        proxy.wait(10)


def _moved_nothing(tool: str, out: str, err: str) -> bool:
    if tool in ("trunkline", "base"):
        return "copied 0 (" in out + err
    if tool == "s5cmd":
        return not out.strip()
    return "There was nothing to transfer" in err


if __name__ == "__main__":
    main()
