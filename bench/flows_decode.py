"""Flow decode + store throughput vs nfdump, and the collector's maximum loss-free rate.

Method (issue 5):
  1. Write a pcap of synthetic traffic (N_FLOWS distinct 5-tuples, 2 packets each).
  2. softflowd (a real exporter) turns it into NetFlow v5, v9 and IPFIX; we capture the
     export datagrams on loopback.
  3. The captured export is replicated REPLICAS times (real records, more of them) and
     replayed, paced, into nfcapd, so nfdump's file holds exactly the records we decode
     (checked: nfdump's flow count == our record count).
  4. Timed, alternating A B A B, ROUNDS rounds, median: (A) our decoder on the same
     datagrams: decode only (to an Arrow table), and decode + store (Parquet, zstd);
     (B) ``nfdump -r FILE -o csv > /dev/null``. Records per CPU-second (per core) and
     per wall-second.
  5. Collector: ``trunkline flows collect`` in a subprocess, IPFIX datagrams replayed at
     increasing rates for STEP_SECONDS each; the maximum rate with zero loss.

Usage: .venv/bin/python bench/flows_decode.py [--flows 100000] [--replicas 4] [--rounds 5]
Writes bench/out/flows_decode.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trunkline.flows.decode import FlowDecoder  # noqa: E402
from trunkline.flows.sources.pcap import eth_ipv4_frame, write_pcap  # noqa: E402
from trunkline.flows.store import FlowStore  # noqa: E402

VERSIONS = {"5": "NetFlow v5", "9": "NetFlow v9", "10": "IPFIX"}


def traffic(path: Path, n_flows: int) -> int:
    rng = random.Random(7)
    frames = []
    t = 1_700_000_000.0
    for i in range(n_flows):
        proto = 6 if i % 4 else 17
        src = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        dst = f"192.0.{(i * 7) & 255}.{(i * 13) & 255}"
        sport, dport = 1024 + i % 60000, (443, 80, 53, 9000)[i % 4]
        for _ in range(2):
            payload = b"x" * rng.randrange(0, 1200)
            if proto == 6:
                l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 0x50, 0x18, 1000, 0, 0)
            else:
                l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
            frames.append((t, eth_ipv4_frame(src, dst, proto, l4 + payload)))
            t += 0.0001
    write_pcap(path, frames)
    return len(frames)


class Capture(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33),
                                 256 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[bytes] = []
        self.stop = threading.Event()
        self.last = time.monotonic()

    def run(self):
        while not self.stop.is_set():
            try:
                self.packets.append(self.sock.recv(65535))
                self.last = time.monotonic()
            except TimeoutError:
                pass
        self.sock.close()


def softflowd_export(pcap: Path, n_packets: int, version: str, tmp: Path) -> list[bytes]:
    cap = Capture()
    cap.start()
    ctl = tmp / f"sf{version}.ctl"
    proc = subprocess.Popen(["softflowd", "-r", str(pcap), "-n", f"127.0.0.1:{cap.port}",
                             "-v", version, "-d", "-m", "2000000", "-c", str(ctl),
                             "-p", str(tmp / "sf.pid")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        out = subprocess.run(["softflowctl", "-c", str(ctl), "statistics"],
                             capture_output=True, text=True).stdout
        if f"Packets processed: {n_packets}" in out:
            break
        time.sleep(0.5)
    for _ in range(100):
        subprocess.run(["softflowctl", "-c", str(ctl), "shutdown"], capture_output=True)
        try:
            proc.wait(timeout=1)
            break
        except subprocess.TimeoutExpired:
            pass
    log = proc.stdout.read()
    while time.monotonic() - cap.last < 1.0:
        time.sleep(0.1)
    cap.stop.set()
    cap.join()
    sent = [ln for ln in log.splitlines() if "Flows exported" in ln]
    return cap.packets, (sent[0].strip() if sent else "")


def decode(packets: list[bytes]) -> int:
    d = FlowDecoder()
    feed = d.feed
    for p in packets:
        feed(p, "127.0.0.1")
    return d.flush().num_rows


def decode_store(packets: list[bytes], root: Path, batch: int = 1_000_000) -> int:
    d = FlowDecoder()
    store = FlowStore(root)
    n = 0
    feed = d.feed
    for p in packets:
        feed(p, "127.0.0.1")
        if d.pending_records >= batch:
            n += store.write(d.flush())
    return n + store.write(d.flush())


def timed(fn, *args):
    c0, w0 = time.process_time(), time.perf_counter()
    r = fn(*args)
    return r, time.process_time() - c0, time.perf_counter() - w0


def nfcapd_file(packets: list[bytes], nfdir: Path, rate_pps: int = 20000) -> Path:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["nfcapd", "-w", str(nfdir), "-b", "127.0.0.1", "-p", str(port),
                             "-t", "3600", "-B", str(64 << 20)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.monotonic()
    for i, p in enumerate(packets):
        tx.sendto(p, ("127.0.0.1", port))
        if i % 100 == 99:
            delay = t0 + (i + 1) / rate_pps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    tx.close()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    files = sorted(nfdir.glob("nfcapd.*"))
    assert len(files) == 1, files
    return files[0]


def nfdump_run(path: Path) -> tuple[int, float, float]:
    p = subprocess.Popen(["nfdump", "-r", str(path), "-o", "csv", "-q"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    w0 = time.perf_counter()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - w0
    assert os.waitstatus_to_exitcode(status) == 0
    return 0, ru.ru_utime + ru.ru_stime, wall


def nfdump_count(path: Path) -> int:
    out = subprocess.run(["nfdump", "-r", str(path), "-o", "csv"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    i = out.index("flows,bytes,packets,avg_bps,avg_pps,avg_bpp")
    return int(out[i + 1].split(",")[0])


def collector_max_rate(packets: list[bytes], per_packet: float, rates: list[int],
                       seconds: float, tmp: Path) -> list[dict]:
    results = []
    for rate in rates:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        store = tmp / f"collect-{rate}"
        proc = subprocess.Popen([sys.executable, "-m", "trunkline.cli.main", "flows", "collect",
                                 "--listen", f"127.0.0.1:{port}", "--store", str(store),
                                 "--flush-interval", "60", "--batch-records", "500000"],
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        proc.stderr.readline()
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        n = int(rate * seconds)
        t0 = time.monotonic()
        burst = max(1, rate // 200)
        for i in range(n):
            tx.sendto(packets[i % len(packets)], ("127.0.0.1", port))
            if i % burst == burst - 1:
                delay = t0 + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        achieved = n / (time.monotonic() - t0)
        tx.close()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        got = FlowStore(store).query("SELECT count(*) AS n FROM flows").column(0)[0].as_py() \
            if FlowStore(store).files() else 0
        exp = decode([packets[i % len(packets)] for i in range(n)])  # same stream, in order
        results.append({"rate_pps": rate, "achieved_pps": round(achieved),
                         "records_per_s": round(achieved * per_packet), "expected": exp,
                         "stored": got, "lost": exp - got})
        print(f"  collector {rate} pps (sent at {achieved:.0f}): {got}/{exp}", flush=True)
        if got != exp or achieved < rate * 0.95:
            break
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--collector-rates", default="10000,20000,40000,60000,80000")
    ap.add_argument("--step-seconds", type=float, default=2.0)
    args = ap.parse_args()
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "platform": platform.platform()}, "flows": args.flows,
           "replicas": args.replicas, "rounds": args.rounds, "versions": {}}
    with tempfile.TemporaryDirectory(prefix="flowbench-") as td:
        tmp = Path(td)
        pcap = tmp / "traffic.pcap"
        n_pk = traffic(pcap, args.flows)
        print(f"traffic: {args.flows} flows, {n_pk} packets", flush=True)
        exports = {}
        for v in VERSIONS:
            pk, log = softflowd_export(pcap, n_pk, v, tmp)
            pk = pk * args.replicas
            exports[v] = pk
            nfdir = tmp / f"nf{v}"
            nfdir.mkdir()
            nffile = nfcapd_file(pk, nfdir)
            ours = decode(pk)
            theirs = nfdump_count(nffile)
            print(f"{VERSIONS[v]}: {len(pk)} datagrams, {ours} records (nfdump: {theirs}); "
                  f"softflowd: {log}", flush=True)
            assert ours == theirs, (ours, theirs)
            rows = {"decode": [], "decode_store": [], "nfdump": []}
            for r in range(args.rounds):
                n, cpu, wall = timed(decode, pk)
                rows["decode"].append((cpu, wall))
                n2, cpu2, wall2 = timed(decode_store, pk, tmp / f"store{v}-{r}")
                assert n2 == ours
                rows["decode_store"].append((cpu2, wall2))
                _, cpu3, wall3 = nfdump_run(nffile)
                rows["nfdump"].append((cpu3, wall3))
            med = {k: (statistics.median(c for c, _ in x), statistics.median(w for _, w in x))
                   for k, x in rows.items()}
            res = {"datagrams": len(pk), "records": ours, "raw": rows}
            for k, (cpu, wall) in med.items():
                res[k] = {"cpu_s": cpu, "wall_s": wall, "records_per_cpu_s": ours / cpu,
                          "records_per_wall_s": ours / wall}
            res["ratio_decode_vs_nfdump_cpu"] = med["nfdump"][0] / med["decode"][0]
            res["ratio_decode_store_vs_nfdump_cpu"] = med["nfdump"][0] / med["decode_store"][0]
            out["versions"][VERSIONS[v]] = res
        ipfix = exports["10"]
        per = round(decode(ipfix) / len(ipfix), 1)
        rates = [int(x) for x in args.collector_rates.split(",")]
        out["collector"] = {"records_per_datagram": per, "steps": collector_max_rate(
            ipfix, per, rates, args.step_seconds, tmp)}
    ok = [s for s in out["collector"]["steps"] if s["lost"] == 0]
    out["collector"]["max_loss_free_pps"] = max((s["achieved_pps"] for s in ok), default=0)
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    (ROOT / "bench" / "out" / "flows_decode.json").write_text(json.dumps(out, indent=1))
    print("\n| export | records | decode rec/CPU-s | decode+store rec/CPU-s | "
          "nfdump rec/CPU-s | decode / nfdump | decode+store / nfdump |")
    print("|---|---|---|---|---|---|---|")
    for name, r in out["versions"].items():
        print(f"| {name} | {r['records']} | {r['decode']['records_per_cpu_s']:,.0f} | "
              f"{r['decode_store']['records_per_cpu_s']:,.0f} | "
              f"{r['nfdump']['records_per_cpu_s']:,.0f} | "
              f"{r['ratio_decode_vs_nfdump_cpu']:.2f}x | "
              f"{r['ratio_decode_store_vs_nfdump_cpu']:.2f}x |")
    c = out["collector"]
    print(f"\ncollector max loss-free: {c['max_loss_free_pps']} datagrams/s "
          f"x {c['records_per_datagram']} records = "
          f"{c['max_loss_free_pps'] * c['records_per_datagram']:,.0f} records/s")


if __name__ == "__main__":
    main()
