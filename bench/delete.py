"""Deleting many objects (issue 18): ``trunkline rm -r`` beside ``s5cmd rm`` and ``rclone delete``.

    python bench/delete.py --keys 20000 --rounds 3
    python bench/delete.py --base-src /tmp/base/src --rtt-ms 20   # also main's tree, far store

Method. One SeaweedFS (``weed mini``, embedded, loopback). Before each timed run the
prefix is filled with ``--keys`` one-byte objects (``s5cmd cp`` of a local folder, not
timed), then one tool deletes the whole prefix: ``trunkline rm -r`` (this tree; with
``--base-src`` also that tree on PYTHONPATH, same interpreter), ``s5cmd rm 'prefix/*'``,
``rclone delete``. Tools rotate each round. A run counts when it exits 0 and the prefix
lists empty afterwards (botocore, straight to the store). Per run, measured by the small
launcher of ``common.run_measured`` around the child only: wall, user and system CPU
seconds. Medians; the load average before and after. With ``--rtt-ms N`` the tools reach
the store through the WAN emulator (``trunkline.testing.proxy``, its own process): N ms
of round trip, as to a far store; the filling goes straight to the store.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

from client_bound import tool_env
from common import machine_info, median, run_measured, venv_bin
from listing import _wan

BUCKET = "delbench"
PREFIX = "many"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base-src", default=None, help="tool 'base': this src/ dir")
    ap.add_argument("--tools", default="trunkline,base,s5cmd,rclone")
    ap.add_argument("--rtt-ms", type=float, default=0,
                    help="through the WAN emulator, this round trip")
    a = ap.parse_args()
    tools = [t for t in a.tools.split(",") if t and (t != "base" or a.base_src)]
    from trunkline.embedded_s3 import EmbeddedS3

    bins = {"trunkline": venv_bin("trunkline"), "s5cmd": venv_bin("s5cmd"),
            "rclone": venv_bin("rclone")}
    print(f"machine: {machine_info()}")
    runs: dict[str, list] = {t: [] for t in tools}
    with tempfile.TemporaryDirectory(prefix="tl-del-") as tmp, EmbeddedS3() as srv:
        work = Path(tmp)
        files = work / "files"
        files.mkdir()
        for i in range(a.keys):
            (files / f"k{i:07d}").write_bytes(b"x")
        srv.create_bucket(BUCKET)
        client = srv.client()
        keys = {"AWS_ACCESS_KEY_ID": srv.env["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": srv.env["AWS_SECRET_ACCESS_KEY"]}
        fill_env = {**tool_env(srv.endpoint_url, work), **keys}
        with _wan(srv, a.rtt_ms) as url:   # (listing.py's: any origin with a port)
            env = {**tool_env(url, work), **keys,
                   "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": keys["AWS_ACCESS_KEY_ID"],
                   "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": keys["AWS_SECRET_ACCESS_KEY"]}
            for r in range(a.rounds):
                k = r % len(tools)
                for tool in tools[k:] + tools[:k]:
                    subprocess.run([bins["s5cmd"], "--endpoint-url", srv.endpoint_url, "cp",
                                    f"{files}/*", f"s3://{BUCKET}/{PREFIX}/"], env=fill_env,
                                   check=True, capture_output=True, timeout=600)
                    left = _count(client)
                    assert left == a.keys, f"filled {left} of {a.keys}"
                    m = run_measured(_argv(tool, bins, url, a.base_src), env=env, cwd=work,
                                     timeout=600, log_dir=work / "logs", tag=f"{tool}-{r}")
                    left = _count(client)
                    ok = m.exit_code == 0 and left == 0
                    print(f"round {r} {tool:9s} {'ok' if ok else 'FAIL'} wall {m.wall_s:.2f} "
                          f"user {m.user_s:.2f} sys {m.sys_s:.2f} left {left}"
                          + ("" if ok else f" {m.last_err_line}"), flush=True)
                    if ok:
                        runs[tool].append(m)
                    elif left:   # the next fill must start from an empty prefix
                        subprocess.run([bins["s5cmd"], "--endpoint-url", srv.endpoint_url,
                                        "rm", f"s3://{BUCKET}/{PREFIX}/*"], env=fill_env,
                                       capture_output=True, timeout=600)
    print(f"\nload after: {os.getloadavg()}")
    print(f"{a.keys} one-byte objects, {a.rounds} rounds, rtt {a.rtt_ms} ms")
    print("| tool | runs | wall s | objects/s | user s | sys s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for tool, ms in runs.items():
        if not ms:
            print(f"| {tool} | 0 | - | - | - | - |")
            continue
        wall = median([m.wall_s for m in ms])
        print(f"| {tool} | {len(ms)} | {wall:.2f} | {a.keys / wall:.0f} | "
              f"{median([m.user_s for m in ms]):.2f} | {median([m.sys_s for m in ms]):.2f} |")


def _argv(tool: str, bins: dict, url: str, base_src: str | None) -> list[str]:
    if tool in ("trunkline", "base"):
        pre = ["env", f"PYTHONPATH={base_src}"] if tool == "base" else []
        return [*pre, bins["trunkline"], "rm", "-r", "-q", f"s3://{BUCKET}/{PREFIX}/"]
    if tool == "s5cmd":
        return [bins["s5cmd"], "--endpoint-url", url, "rm", f"s3://{BUCKET}/{PREFIX}/*"]
    return [bins["rclone"], "delete", f"bench:{BUCKET}/{PREFIX}"]


def _count(client) -> int:
    n = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                                 Prefix=f"{PREFIX}/"):
        n += page.get("KeyCount", 0)
    return n


if __name__ == "__main__":
    main()
