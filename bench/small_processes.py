"""Small objects on one machine: one engine process against several (issue 18).

    python bench/small_processes.py --objects 6000 --rounds 5 --workers 1,2

Why: one trunkline process moves small objects only as fast as its interpreter lock lets
its threads prepare requests and finish files (``-c 1`` is as fast as ``-c 16``); the way
past that is more processes. The Ray engine already runs one engine per worker process
(``--ray=local --per-node-dest --workers-per-node N``), so this measures it on one node.

Method. ``--objects`` random objects of ``--size`` served by nginx on loopback
(``nginx_origin.py``), copied to ``--dst-root`` (a tmpfs by default, so the file system's
per-file work does not hide the client's). Per round, in alternating order: ``trunkline
cp -r`` in one process, then the Ray engine with each worker count. Ray is started before
each Ray run (loopback only, as ``--ray=local`` does) and its start-up is timed apart:
the copy figure is the ``copy_on_ray`` call alone. Every run must copy every object.
CPU is not reported: the Ray workers' CPU is spread over processes this harness does not
own. Medians over the rounds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import Dataset, _free_port, generate_dataset, machine_info, median, venv_bin
from nginx_origin import NginxOrigin, write_listing

KiB = 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=6000)
    ap.add_argument("--size", type=int, default=256 * KiB)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", default="1,2", help="Ray worker processes per node to try")
    ap.add_argument("--dst-root", default="/dev/shm")
    ap.add_argument("--workdir", default="/tmp/tl-small-processes")
    ap.add_argument("--keep", action="store_true", help="keep the dataset for another run")
    a = ap.parse_args()
    workers = [int(w) for w in a.workers.split(",")]
    root = Path(a.workdir)
    name = f"small{a.objects}"
    if not (root / "bench" / name).exists():
        generate_dataset(Dataset(name, a.objects, a.size), root / "bench" / name)
    write_listing(root, "bench", name)
    dst = Path(a.dst_root) / "tl-small-processes"
    print(f"machine: {machine_info()}")
    with NginxOrigin(root, "bench", _free_port()) as origin:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ENDPOINT_URL=origin.endpoint_url, AWS_ACCESS_KEY_ID="bench",
                   AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1",
                   TRUNKLINE_CONFIG="/nonexistent", TRUNKLINE_STATE_DIR=str(root / "state"))
        os.environ.update(env)
        import ray
        from ray._private import ray_constants

        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"   # loopback only
        ray_constants.ENABLE_RAY_CLUSTER = False
        from trunkline.cluster import copy_on_ray

        modes = ["process"] + [f"ray{w}" for w in workers]
        res: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
        for r in range(a.rounds):
            for mode in modes if r % 2 == 0 else list(reversed(modes)):
                shutil.rmtree(dst, ignore_errors=True)
                start_s = 0.0
                t0 = time.perf_counter()
                if mode == "process":
                    p = subprocess.run([venv_bin("trunkline") or "trunkline", "cp", "-r", "-q",
                                        "--no-resume", f"s3://bench/{name}", f"{dst}/"],
                                       env=env, capture_output=True, text=True, timeout=600)
                    copy_s = time.perf_counter() - t0
                    ok = p.returncode == 0
                else:
                    ray.init(include_dashboard=False, log_to_driver=False)
                    start_s = time.perf_counter() - t0
                    t1 = time.perf_counter()
                    out = copy_on_ray(f"s3://bench/{name}", f"{dst}/", cluster="auto",
                                      per_node_dest=True, recursive=True, resume=False,
                                      workers_per_node=int(mode[3:]))
                    copy_s = time.perf_counter() - t1
                    ok = out.ok
                    ray.shutdown()
                files = sum(len(f) for _, _, f in os.walk(dst))
                if not ok or files != a.objects:
                    raise SystemExit(f"{mode}: copied {files} of {a.objects} objects")
                res[mode].append((copy_s, start_s))
                print(f"round {r + 1} {mode}: {copy_s:.2f} s copy, {start_s:.2f} s Ray start",
                      flush=True)
        shutil.rmtree(dst, ignore_errors=True)
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load after: {os.getloadavg()}")
    print("| mode | copy s (median) | objects/s | x one process | Ray start s |")
    print("| --- | --- | --- | --- | --- |")
    base = median([x[0] for x in res["process"]])
    for m in modes:
        c = median([x[0] for x in res[m]])
        start = "-" if m == "process" else f"{median([x[1] for x in res[m]]):.1f}"
        print(f"| {m} | {c:.2f} | {a.objects / c:,.0f} | {base / c:.2f} | {start} |")


if __name__ == "__main__":
    sys.exit(main())
