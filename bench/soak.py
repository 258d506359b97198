"""Soak (issue 18 item 7): one long download, minute by minute, direct or through a WAN.

    python bench/soak.py --minutes 30                       # direct, nginx on loopback
    python bench/soak.py --minutes 30 --rtt-ms 20 --window 8MiB   # through the WAN emulator

Method. nginx serves ``--keys`` keys that are all links to one object of random bytes
(``--object-size``), so the source is as long as wanted while the origin holds one file;
one ``trunkline.api.copy`` (auto-tuned, the defaults) downloads the whole prefix into a
tmpfs while a cleaner thread deletes each object once it was renamed into place (so the
destination stays small; trunkline renames only verified objects). With ``--rtt-ms`` the
traffic goes through ``trunkline.testing.proxy.Proxy`` (delay, window per connection) run
in its own process, so its CPU is not the client's. At ``--minutes`` the run is
interrupted (SIGINT, as a user would) and the figures written.

Every ``--sample-s`` seconds (from the copy's own progress snapshots and /proc/self):
bytes done, retries, slow-downs, errors, active connections, RSS, open file descriptors,
sockets, threads. Per minute: throughput (decimal GB/s of bytes done in that minute). A
sound soak: RSS, fds, sockets and threads flat; after the tuned first minutes, each
minute's throughput within +/-5 % of the median minute (on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from client_bound import BUCKET, tool_env
from common import GB, Dataset, _free_port, generate_dataset, machine_info
from nginx_origin import NginxOrigin, write_listing

from trunkline.units import parse_size


def parse_rate_bps(text: str) -> float:
    """'4Gbit' / '500Mbit' -> bits/s; '0' -> 0 (no cap)."""
    t = text.strip().lower()
    for unit, mult in (("gbit", 1e9), ("mbit", 1e6)):
        if t.endswith(unit):
            return float(t[: -len(unit)]) * mult
    return float(t)


def proc_figures() -> dict[str, int]:
    """RSS (KiB), open fds, sockets and threads of this process, from /proc/self."""
    rss = threads = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    fds = socks = 0
    for fd in os.listdir("/proc/self/fd"):
        fds += 1
        try:
            socks += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return {"rss_kib": rss, "fds": fds, "sockets": socks, "threads": threads}


def cleaner(dst: Path, stop: threading.Event, removed: list[int]) -> None:
    """Delete objects that are in place (final names; partial files start with '.')."""
    while not stop.wait(1.0):
        try:
            names = os.listdir(dst)
        except FileNotFoundError:
            continue
        for n in names:
            if n.startswith("."):
                continue
            try:
                (dst / n).unlink()
                removed[0] += 1
            except FileNotFoundError:
                pass


PROXY_CHILD = """
import sys, time
from trunkline.testing.proxy import Proxy
port, delay, window = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
rate = float(sys.argv[4]) or None
with Proxy(("127.0.0.1", port), delay_s=delay, window_bytes=window, rate_bps=rate,
           http=len(sys.argv) < 6) as p:
    print(p.port, flush=True)
    sys.stdin.read()
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--object-size", default="256MiB")
    ap.add_argument("--keys", type=int, default=8000)
    ap.add_argument("--rtt-ms", type=float, default=0)
    ap.add_argument("--window", default="8MiB", help="per connection, with --rtt-ms")
    ap.add_argument("--wan-rate", default="0", help="aggregate cap of the WAN path (4Gbit)")
    ap.add_argument("--bwlimit", default=None, help="trunkline's own cap (--bwlimit)")
    ap.add_argument("--sample-s", type=float, default=10)
    ap.add_argument("--root", default="/dev/shm")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--from-log", default=None,
                    help="summarise the sample lines of an earlier run's output instead")
    a = ap.parse_args()
    size = parse_size(a.object_size)
    samples: list[dict] = []
    if a.from_log:
        for line in Path(a.from_log).read_text().splitlines():
            if line.startswith('{"t_s"'):
                row = json.loads(line)
                if row["t_s"] <= a.minutes * 60 + a.sample_s:
                    samples.append(row)
        return summarise(a, samples, "from the log", 0)
    with tempfile.TemporaryDirectory(dir=a.root, prefix="tl-soak-") as d:
        work = Path(d)
        work.chmod(0o755)
        root = work / "origin"
        src = root / BUCKET / "one"
        gen = generate_dataset(Dataset("one", 1, size), src)
        obj = src / next(iter(gen.sizes))
        many = root / BUCKET / "soak"
        many.mkdir(parents=True)
        for i in range(a.keys):
            (many / f"k{i:06d}.bin").symlink_to(obj)
        write_listing(root, BUCKET, "soak")
        with NginxOrigin(root, BUCKET, _free_port(), workers=1) as origin:
            endpoint, proxy = origin.endpoint_url, None
            if a.rtt_ms:
                proxy = subprocess.Popen(
                    [sys.executable, "-c", PROXY_CHILD, str(origin.port),
                     str(a.rtt_ms / 2000), str(parse_size(a.window)),
                     str(parse_rate_bps(a.wan_rate))],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                endpoint = f"http://127.0.0.1:{proxy.stdout.readline().strip()}"
            os.environ.update(tool_env(endpoint, work))
            from trunkline.api import copy

            dst = work / "dst"
            dst.mkdir()
            stop, removed = threading.Event(), [0]
            threading.Thread(target=cleaner, args=(dst, stop, removed), daemon=True).start()
            last = {"t": 0.0}
            t0 = time.monotonic()

            def on_progress(s) -> None:
                now = time.monotonic()
                if now - last["t"] < a.sample_s:
                    return
                last["t"] = now
                row = {"t_s": round(now - t0, 1), "done_bytes": s.done_bytes,
                       "objects": s.objects, "retries": s.retries, "slowdowns": s.slowdowns,
                       "errors": s.errors, "failed": s.failed, "active": s.active,
                       "decision": s.decision, **proc_figures()}
                samples.append(row)
                print(json.dumps(row), flush=True)

            # a background job started by a shell without job control ignores SIGINT
            signal.signal(signal.SIGINT, signal.default_int_handler)
            timer = threading.Timer(a.minutes * 60, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            end = "finished"
            try:
                extra = {"bwlimit": a.bwlimit} if a.bwlimit else {}
                copy(f"s3://{BUCKET}/soak/", str(dst) + "/", recursive=True, resume=False,
                     direct_io=False, on_progress=on_progress, **extra)
            except KeyboardInterrupt:
                end = "interrupted at the deadline"
            finally:
                timer.cancel()
                stop.set()
                if proxy:
                    proxy.stdin.close()
                    proxy.wait(10)
    return summarise(a, samples, end, removed[0])


def summarise(a: argparse.Namespace, samples: list[dict], end: str, removed: int) -> int:
    """Per-minute throughput and the flatness figures; printed, and written with
    ``--json-out``."""
    if not samples:
        print("no samples")
        return 1
    # per minute: bytes done in each whole minute, the done count at each minute boundary
    # interpolated between the samples around it (samples come every ~10.1 s, so taking
    # the last sample before a boundary made some "minutes" 50 s long: a -17 % artefact)
    per_min = []
    by_t = [(0.0, 0)] + [(r["t_s"], r["done_bytes"]) for r in samples]

    def done_at(x: float) -> float:
        for (t0, b0), (t1, b1) in zip(by_t, by_t[1:], strict=False):
            if t0 <= x <= t1:
                return b0 + (b1 - b0) * ((x - t0) / (t1 - t0) if t1 > t0 else 1.0)
        return float(by_t[-1][1])

    for m in range(1, int(by_t[-1][0] // 60) + 1):
        per_min.append((done_at(m * 60) - done_at((m - 1) * 60)) / 60 / GB)
    tuned = per_min[2:] if len(per_min) > 4 else per_min
    med = statistics.median(tuned) if tuned else 0.0
    spread = [(x / med - 1) * 100 for x in tuned] if med else []
    first, lastr = samples[min(2, len(samples) - 1)], samples[-1]
    summary = {
        "end": end, "minutes": a.minutes, "rtt_ms": a.rtt_ms, "window": a.window,
        "wan_rate": a.wan_rate, "bwlimit": a.bwlimit, "objects_removed": removed,
        "per_minute_gb_s": [round(x, 3) for x in per_min],
        "median_gb_s_after_2_min": round(med, 3),
        "worst_minute_vs_median_pct": round(max(spread, key=abs), 1) if spread else None,
        "rss_mib_first_last_max": [round(first["rss_kib"] / 1024), round(lastr["rss_kib"] / 1024),
                                   round(max(r["rss_kib"] for r in samples) / 1024)],
        "fds_first_last_max": [first["fds"], lastr["fds"], max(r["fds"] for r in samples)],
        "sockets_first_last_max": [first["sockets"], lastr["sockets"],
                                   max(r["sockets"] for r in samples)],
        "threads_first_last_max": [first["threads"], lastr["threads"],
                                   max(r["threads"] for r in samples)],
        "active_min_max": [min(r["active"] for r in samples[2:] or samples),
                           max(r["active"] for r in samples)],
        "active_first_last": [samples[0]["active"], lastr["active"]],
        "last_decision": lastr["decision"],
        "retries": lastr["retries"], "slowdowns": lastr["slowdowns"],
        "errors": lastr["errors"], "failed": lastr["failed"],
        "machine": machine_info(),
    }
    print(json.dumps(summary, indent=1))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"summary": summary, "samples": samples},
                                               indent=1))
    return 0 if lastr["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
