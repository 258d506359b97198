"""Small objects on one machine: one engine process against several, beside s5cmd (issue 18).

    python bench/small_processes.py --objects 6000 --rounds 5 --processes 2,3
    python bench/small_processes.py --objects 6000 --rounds 3 --processes 2 --ray 2

Why: one trunkline process moves small objects only as fast as its interpreter lock lets
its threads prepare requests and finish files (``-c 1`` is as fast as ``-c 16``); the way
past that is more processes. ``trunkline cp --processes N`` runs N engine processes on
this host that take shards of one listing (``cluster/processes.py``); ``--ray=local
--per-node-dest --workers-per-node N`` does the same on a private Ray (``--ray N``).

Method. ``--objects`` random objects of ``--size`` served by nginx on loopback
(``nginx_origin.py``), copied to ``--dst-root`` (a tmpfs by default, so the file system's
per-file work does not hide the client's). Per round, in rotating order: ``trunkline cp
-r`` in one process, ``trunkline cp -r -P N`` for each N, s5cmd, and each Ray worker
count. Every run is a whole CLI process, measured by the launcher of
``common.run_measured`` (wall; user and system CPU of the command and of the processes
it waited for: the engine processes, not Ray's, whose workers live outside the command).
Every run must copy every object. Medians over the rounds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from common import (
    Dataset,
    _free_port,
    generate_dataset,
    machine_info,
    median,
    run_measured,
    venv_bin,
)
from nginx_origin import NginxOrigin, write_listing

KiB = 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=6000)
    ap.add_argument("--verb", choices=("cp", "sync"), default="cp",
                    help="what trunkline and s5cmd run (sync: into the emptied folder)")
    ap.add_argument("--size", type=int, default=256 * KiB)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--processes", default="2", help="trunkline cp -P N values to try")
    ap.add_argument("--ray", default="", help="Ray worker processes per node to try")
    ap.add_argument("--no-s5cmd", action="store_true")
    ap.add_argument("--no-single", action="store_true",
                    help="skip the one-process run (ratios then against s5cmd only)")
    ap.add_argument("--nginx-workers", type=int, default=1)
    ap.add_argument("--args", action="append", default=[], metavar="NAME=ARGS",
                    help="a mode NAME: trunkline cp -r with these extra arguments "
                         "('P12c2=-P 12 -c 2')")
    ap.add_argument("--base-src", default=None,
                    help="also run one process and each -P N with this src/ dir (e.g. "
                         "main's) on PYTHONPATH")
    ap.add_argument("--dst-root", default="/dev/shm")
    ap.add_argument("--workdir", default="/tmp/tl-small-processes")
    ap.add_argument("--keep", action="store_true", help="keep the dataset for another run")
    a = ap.parse_args()
    root = Path(a.workdir)
    name = f"small{a.objects}"
    if not (root / "bench" / name).exists():
        generate_dataset(Dataset(name, a.objects, a.size), root / "bench" / name)
    write_listing(root, "bench", name)
    dst = Path(a.dst_root) / "tl-small-processes"
    # the venv's script, else this interpreter on the tree (a bare device machine)
    tl = venv_bin("trunkline") or shutil.which("trunkline")
    trunkline = [tl] if tl else [sys.executable, "-m", "trunkline.cli.main"]
    print(f"machine: {machine_info()}")
    print(f"load before: {os.getloadavg()}")
    with NginxOrigin(root, "bench", _free_port(), workers=a.nginx_workers) as origin:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ENDPOINT_URL=origin.endpoint_url, AWS_ACCESS_KEY_ID="bench",
                   AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1",
                   TRUNKLINE_CONFIG="/nonexistent", TRUNKLINE_STATE_DIR=str(root / "state"),
                   RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")   # a Ray run: loopback only
        url = f"s3://bench/{name}/"
        # cp -r, or sync into the emptied folder (it copies everything, after comparing)
        verb = ["cp", "-r"] if a.verb == "cp" else ["sync"]
        modes: dict[str, list[str]] = {} if a.no_single else {
            "one process": [*trunkline, *verb, "-q", "--no-resume", "-P", "1", url,
                            f"{dst}/"],
            # no -P: the count cp takes by itself (cluster/auto.py)
            "auto": [*trunkline, *verb, "-q", "--no-resume", url, f"{dst}/"]}
        for n in (int(x) for x in a.processes.split(",") if x):
            modes[f"-P {n}"] = [*trunkline, *verb, "-q", "--no-resume", "-P", str(n),
                                url, f"{dst}/"]
        for v in a.args:
            name, args = v.split("=", 1)
            modes[name] = [*trunkline, *verb, "-q", "--no-resume", *args.split(), url,
                           f"{dst}/"]
        envs: dict[str, dict[str, str]] = {}
        if a.base_src:
            # the other tree first; what else is on the path (a bare machine's wheels) stays
            here = str(Path(__file__).resolve().parent.parent / "src")
            rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                    if p and os.path.realpath(p) != os.path.realpath(here)]
            base_env = dict(env, PYTHONPATH=os.pathsep.join([str(Path(a.base_src).resolve()),
                                                             *rest]))
            base_cp = [sys.executable, "-m", "trunkline.cli.main", "cp", "-r", "-q",
                       "--no-resume"]
            if not a.no_single:
                modes["base one process"] = [*base_cp, url, f"{dst}/"]
                envs["base one process"] = base_env
            for n in (int(x) for x in a.processes.split(",") if x):
                modes[f"base -P {n}"] = [*base_cp, "-P", str(n), url, f"{dst}/"]
                envs[f"base -P {n}"] = base_env
        for n in (int(x) for x in a.ray.split(",") if x):
            modes[f"Ray {n}"] = [*trunkline, "cp", "-r", "-q", "--no-resume", url, f"{dst}/",
                                 "--per-node-dest", "--workers-per-node", str(n),
                                 "--ray=local"]
        if not a.no_s5cmd:
            modes["s5cmd"] = [venv_bin("s5cmd") or shutil.which("s5cmd") or "s5cmd",
                              "--endpoint-url",
                              origin.endpoint_url, a.verb, f"{url}*", f"{dst}/"]
        res: dict[str, list] = {m: [] for m in modes}
        order = list(modes)
        for r in range(a.rounds):
            for mode in order[r % len(order):] + order[:r % len(order)]:
                shutil.rmtree(dst, ignore_errors=True)
                m = run_measured(modes[mode], env=envs.get(mode, env), log_dir=root / "logs",
                                 tag=f"{mode.replace(' ', '')}-{r}", timeout=900)
                files = sum(len(f) for _, _, f in os.walk(dst))
                if m.exit_code != 0 or files != a.objects:
                    raise SystemExit(f"{mode}: exit {m.exit_code}, copied {files} of "
                                     f"{a.objects} objects: {m.stderr_tail[-500:]}")
                res[mode].append(m)
                print(f"round {r + 1} {mode}: {m.wall_s:.2f} s, user {m.user_s:.2f} s, "
                      f"sys {m.sys_s:.2f} s", flush=True)
        shutil.rmtree(dst, ignore_errors=True)
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load after: {os.getloadavg()}")
    print("| mode | wall s | objects/s | x one process | x s5cmd | user ms/object | "
          "sys ms/object | peak RSS MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    base = median([m.wall_s for m in res["one process"]]) if "one process" in res else None
    peer = median([m.wall_s for m in res["s5cmd"]]) if "s5cmd" in res else None
    for mode, runs in res.items():
        w = median([m.wall_s for m in runs])
        u = median([m.user_s for m in runs]) * 1000 / a.objects
        s = median([m.sys_s for m in runs]) * 1000 / a.objects
        rss = median([m.maxrss_mib for m in runs])
        xp = f"{peer / w:.2f}" if peer else "-"
        cpu = "-" if mode.startswith("Ray") else None
        xb = f"{base / w:.2f}" if base else "-"
        print(f"| {mode} | {w:.2f} | {a.objects / w:,.0f} | {xb} | {xp} | "
              f"{cpu or f'{u:.3f}'} | {cpu or f'{s:.3f}'} | {rss:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
