"""Client-bound downloads (issue 18): trunkline, s5cmd and rclone against a cheap origin.

    python bench/client_bound.py                                   # three sets, 3 rounds
    python bench/client_bound.py --datasets huge1 --rounds 5 --tools trunkline,s5cmd

Method. The datasets (random bytes) are written once under a scratch root and served by
nginx on loopback (``nginx_origin.py``: sendfile, Range, ETag, static ListObjectsV2 pages),
so the origin costs little CPU and the client's own cost per GB shows. For each dataset
the tools run in rotating order for ``--rounds`` rounds; the destination is deleted and
``sync`` run before each timed run, memory prefaulted as in ``mover.py``. A run counts when
it exits 0 and every file has its size and the sampled files their sha256. Figures per run
(the client process only, via ``wait4`` in a small launcher): wall, user and system CPU
seconds, peak RSS; plus nginx's CPU over the run. Medians over the good runs; CPU per GB
uses decimal GB.

Durability. trunkline makes every file durable before it counts as done (O_DIRECT bulk, fsync
of the file and its folder); s5cmd and rclone exit with the bytes still in the page cache.
So after each run the time of a ``sync`` is taken too: "to disk" = wall + that sync, the
time until the copy survives a power cut. ``--dst-root /dev/shm`` puts the destination on a
tmpfs, where neither the disk nor a flush takes part (the client's own cost alone).
Start-up apart. Each round also copies one 1 KiB object with each tool ("one1"); the
median user and system seconds of that copy are the tool's start-up, and "user s/GB
after start-up" subtracts them from a dataset's run (the issue's user CPU per GB is
meant without the interpreter's start).
``--strace DIR`` runs trunkline under ``strace -f -c`` (a syscall census per run; slows it:
not for timing). ``--variant NAME=VAR=VALUE`` adds a tool NAME: this tree's trunkline with
one environment variable set (``--variant isal=TRUNKLINE_CRC32C=isal``), so two settings
of one build alternate in the same run; ``--args NAME=ARGS`` likewise adds trunkline with
extra ``cp`` arguments (``--args c32="-c 32"``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    GB,
    Dataset,
    KiB,
    MiB,
    generate_dataset,
    machine_info,
    median,
    prefault,
    run_measured,
    sha256_file,
    venv_bin,
)
from nginx_origin import NginxOrigin, write_listing

HERE = Path(__file__).resolve().parent
BUCKET = "bench"
DATASETS = {
    "huge1": Dataset("huge1", 1, 1024 * MiB),
    "large16": Dataset("large16", 16, 64 * MiB),
    "small2000": Dataset("small2000", 2000, 256 * KiB),
    "one1": Dataset("one1", 1, 1 * KiB),   # the start-up probe, run with every dataset
}


def tool_argv(tool: str, bins: dict[str, str], ds: str, dst: Path, endpoint: str) -> list[str]:
    url = f"s3://{BUCKET}/{ds}/"
    if tool == "trunkline":
        return [bins["trunkline"], "cp", "-r", "-q", "--no-resume", url, f"{dst}/"]
    if tool == "trunkline_base":   # another tree (--base-src), same interpreter
        return [sys.executable, "-m", "trunkline.cli.main", "cp", "-r", "-q", "--no-resume",
                url, f"{dst}/"]
    if tool == "s5cmd":
        return [bins["s5cmd"], "--endpoint-url", endpoint, "cp", f"{url}*", f"{dst}/"]
    if tool == "rclone":
        return [bins["rclone"], "copy", f"bench:{BUCKET}/{ds}", str(dst)]
    raise ValueError(tool)


def tool_env(endpoint: str, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    empty = work / "empty.conf"
    empty.touch()
    env.update({
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY":
        "bench-secret", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "TRUNKLINE_CONFIG": str(empty), "TRUNKLINE_STATE_DIR": str(work / "state"),
        "RCLONE_CONFIG": str(empty), "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other", "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": "bench",
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": "bench-secret",
        "RCLONE_CONFIG_BENCH_REGION": "us-east-1", "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
        "RCLONE_CONFIG_BENCH_LIST_VERSION": "2",  # the origin serves ListObjectsV2 pages
    })
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="huge1,large16,small2000")
    ap.add_argument("--tools", default="trunkline,s5cmd,rclone")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--trunkline-args", default="", help="extra args for trunkline cp")
    ap.add_argument("--dst-root", default=None,
                    help="where the destination folder goes (default: the workdir)")
    ap.add_argument("--strace", default=None, help="syscall census of trunkline runs here")
    ap.add_argument("--base-src", default=None,
                    help="tool trunkline_base: this src/ dir (e.g. main's) on PYTHONPATH")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=VAR=VALUE",
                    help="tool NAME: trunkline with VAR=VALUE in its environment")
    ap.add_argument("--nginx-workers", type=int, default=1)
    ap.add_argument("--args", action="append", default=[], metavar="NAME=ARGS",
                    help="tool NAME: trunkline cp with these extra arguments ('c32=-c 32')")
    a = ap.parse_args()
    variants: dict[str, tuple[str, str] | None] = {}
    extra: dict[str, list[str]] = {}
    for v in a.variant:
        name, var, value = v.split("=", 2)
        variants["trunkline_" + name] = (var, value)
    for v in a.args:
        name, args = v.split("=", 1)
        variants["trunkline_" + name] = None
        extra["trunkline_" + name] = args.split()
    tools = a.tools.split(",") + list(variants)
    bins = {t: (sys.executable if t == "trunkline_base" else
                venv_bin("trunkline") if t in variants else venv_bin(t)) for t in tools}
    bins.setdefault("trunkline", venv_bin("trunkline"))
    missing = [t for t, b in bins.items() if not b]
    if missing or shutil.which("nginx") is None:
        sys.exit(f"missing: {missing or ''} {'nginx' if not shutil.which('nginx') else ''}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(dir=a.workdir, prefix="tl-clientbound-") as d:
        work = Path(d)
        work.chmod(0o755)   # nginx's workers run as an unprivileged user and must read it
        root = work / "origin"
        gens = {}
        for name in [*a.datasets.split(","), "one1"]:
            gens[name] = generate_dataset(DATASETS[name], root / BUCKET / name)
            write_listing(root, BUCKET, name)
        from common import _free_port
        with NginxOrigin(root, BUCKET, _free_port(), workers=a.nginx_workers) as origin:
            env = tool_env(origin.endpoint_url, work)
            for name, gen in gens.items():
                for r in range(a.rounds):
                    order = tools[r % len(tools):] + tools[:r % len(tools)]
                    for tool in order:
                        dst = Path(a.dst_root or work) / f"tl-cb-dst-{os.getpid()}"
                        shutil.rmtree(dst, ignore_errors=True)
                        dst.mkdir()
                        subprocess.run(["sync"], check=False)
                        prefault(gen.dataset.total_bytes)
                        argv = tool_argv("trunkline" if tool in variants else tool, bins, name,
                                         dst, origin.endpoint_url)
                        if (tool == "trunkline" or tool in variants) and a.trunkline_args:
                            argv[2:2] = a.trunkline_args.split()
                        argv[2:2] = extra.get(tool, [])
                        if a.strace and tool.startswith("trunkline"):
                            Path(a.strace).mkdir(parents=True, exist_ok=True)
                            argv[:0] = ["strace", "-f", "-c", "-o",
                                        f"{a.strace}/{name}-{tool}-{r}.strace"]
                        tenv = env
                        if tool == "trunkline_base":
                            tenv = dict(env, PYTHONPATH=str(Path(a.base_src).resolve()))
                        elif variants.get(tool):
                            tenv = dict(env, **dict([variants[tool]]))
                        cpu0 = origin.cpu_seconds()
                        m = run_measured(argv, env=tenv, log_dir=work / "logs",
                                         tag=f"{name}-{tool}-{r}", timeout=600)
                        server_cpu = origin.cpu_seconds() - cpu0
                        t_sync = time.monotonic()
                        os.sync()   # what the tool left in the page cache, to disk
                        sync_s = time.monotonic() - t_sync
                        ok = m.exit_code == 0 and all(
                            (dst / f).is_file() and (dst / f).stat().st_size == s
                            for f, s in gen.sizes.items())
                        sample = next(iter(gen.sizes))
                        if ok:
                            ok = sha256_file(dst / sample) == gen.sha256[sample]
                        row = {"dataset": name, "tool": tool, "round": r, "ok": ok,
                               "wall_s": m.wall_s, "sync_s": sync_s,
                               "disk_s": m.wall_s + sync_s, "user_s": m.user_s, "sys_s": m.sys_s,
                               "rss_mib": m.maxrss_mib, "server_cpu_s": server_cpu,
                               "gb": gen.dataset.total_bytes / GB,
                               "err": "" if ok else (m.stderr_tail[-300:] or m.stdout_tail[-300:])}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                        shutil.rmtree(dst, ignore_errors=True)
    info = machine_info()
    print(f"\nmachine: {info}")
    print(f"destination: {a.dst_root or work} ({'tmpfs' if a.dst_root == '/dev/shm' else 'disk'})")
    print("| set | tool | wall s | x best peer | to disk s | x best peer | user s/GB | "
          "user s/GB after start-up | sys s/GB | CPU s/GB | peak RSS MiB | nginx CPU s | "
          "objects/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in [n for n in gens if n != "one1"]:
        med = {}
        for tool in tools:
            good = [r for r in rows if r["dataset"] == name and r["tool"] == tool and r["ok"]]
            if not good:
                med[tool] = None
                continue
            gb = good[0]["gb"]
            med[tool] = {k: median([r[k] for r in good]) for k in
                         ("wall_s", "disk_s", "user_s", "sys_s", "rss_mib", "server_cpu_s")} \
                | {"gb": gb}
        start = {}
        for tool in tools:
            one = [r for r in rows if r["dataset"] == "one1" and r["tool"] == tool and r["ok"]]
            start[tool] = median([r["user_s"] for r in one]) if one else None
        peers = [med[t] for t in tools if not t.startswith("trunkline") and med.get(t)]
        best = min(p["wall_s"] for p in peers) if peers else None
        best_disk = min(p["disk_s"] for p in peers) if peers else None
        for tool in tools:
            m = med[tool]
            if m is None:
                print(f"| {name} | {tool} | FAIL | | | | | | | | | | |")
                continue
            n = DATASETS[name].count
            ratio = f"{m['wall_s'] / best:.2f}" if best else "-"
            dratio = f"{m['disk_s'] / best_disk:.2f}" if best_disk else "-"
            after = (f"{(m['user_s'] - start[tool]) / m['gb']:.3f}"
                     if start[tool] is not None and name != "one1" else "-")
            print(f"| {name} | {tool} | {m['wall_s']:.2f} | {ratio} | {m['disk_s']:.2f} | {dratio} | "
                  f"{m['user_s'] / m['gb']:.3f} | {after} | "
                  f"{m['sys_s'] / m['gb']:.3f} | {(m['user_s'] + m['sys_s']) / m['gb']:.3f} | "
                  f"{m['rss_mib']:.0f} | {m['server_cpu_s']:.2f} | {n / m['wall_s']:.0f} |")
    print("\nstart-up (one 1 KiB object, medians): | tool | wall s | user s | sys s |")
    for tool in tools:
        one = [r for r in rows if r["dataset"] == "one1" and r["tool"] == tool and r["ok"]]
        if one:
            print(f"| {tool} | {median([r['wall_s'] for r in one]):.3f} | "
                  f"{median([r['user_s'] for r in one]):.3f} | "
                  f"{median([r['sys_s'] for r in one]):.3f} |")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
