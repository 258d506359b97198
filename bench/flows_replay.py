"""Side by side with real peers (issue 15): the same loopback replay into trunkline's
collector (1 and 2 workers), pmacct's nfacctd and nfdump's nfcapd; the loss-free rate of
each, CPU per record, peak memory.

Replay: the NetFlow v5 datagrams of the shared capture ``netflow/nfv5.pcap`` (29 records
each; v5 is the one format all three decode identically), sent from one Python process
on loopback from 8 exporter addresses (127.0.0.10-17) at a set rate for STEP seconds, every collector at every rate, alternating
collectors within a round (A B C D A B C D ...). Received records are counted in each
collector's own output: our store (``count(*)``), nfcapd's file (``nfdump`` summary),
nfacctd's print plugin (sum of packets; each record of the capture has a known packet
count, so sum(packets) / packets-per-datagram = datagrams that arrived whole).

CPU: user + system seconds of the collector's whole process tree (pmacct's core and
plugin processes, our workers), read from /proc after start-up and before stopping it
and, with wait4 after it exited, including its waited-for children and the final write
(``cpu_total_s``, minus the start-up: what CPU/record uses); memory: the sum of
the tree's peak RSS (VmHWM). The replayer's own CPU is recorded too: it shares the cores.

Usage: .venv/bin/python bench/flows_replay.py [--rates 2000,5000,10000,20000,40000]
       [--step 3] [--rounds 2] [--workers 1,2] [--exporters 8]
Writes bench/out/flows_replay.json (--out) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import pyarrow.parquet as pq  # noqa: E402

from trunkline.flows.decode import FlowDecoder  # noqa: E402
from trunkline.flows.sources.pcap import read_udp  # noqa: E402

SHARED = Path(os.environ.get("TRUNKLINE_SHARED_DATA", ROOT.parent / "shared" / "data"))
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for t in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(x) for x in t.read_text().split()]
            except OSError:
                pass
    return out


def tree_usage(pid: int) -> tuple[float, int, dict[str, float]]:
    """(CPU seconds, sum of peak RSS KiB, CPU seconds by role) of a process and its
    descendants; roles: the receive processes, the forked workers (decode + write), the
    parent (with one worker it decodes and writes)."""
    cpu, hwm, roles = 0.0, 0, {}
    for p in tree(pid):
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            text = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        s = (int(f[11]) + int(f[12])) / TICK
        cpu += s
        role = ("receiver" if "trunkline.flows.sources.receiver" in text
                else "main" if p == pid else "worker")
        roles[role] = roles.get(role, 0.0) + s
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return cpu, hwm, roles


class Peer:
    name = ""

    def start(self, port: int, out: Path) -> subprocess.Popen: ...

    def count(self, out: Path) -> int: ...

    def details(self, out: Path) -> dict:
        return {}


class Trunkline(Peer):
    def __init__(self, workers: int, receiver: str = "process", tree: tuple[str, Path] | None = None):
        self.workers, self.receiver = workers, receiver
        self.src = tree[1] if tree else ROOT / "src"  # another checkout's src/ (--tree)
        self.name = f"trunkline {workers}w" + ("" if receiver == "process" else f" {receiver}") \
            + (f" {tree[0]}" if tree else "")

    def start(self, port, out):
        p = subprocess.Popen([sys.executable, "-m", "trunkline.cli.main", "flows", "collect",
                              "--listen", f"127.0.0.1:{port}", "--store", str(out),
                              "--flush-interval", "60", "--batch-records", "500000",
                              "--workers", str(self.workers), "--receiver", self.receiver],
                             stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": str(self.src)})
        deadline = time.monotonic() + 60  # ready: every worker's sockets are being read
        while time.monotonic() < deadline and p.poll() is None:
            st = self.status(out)
            if st and st.get("receiver", {}).get("ready", 0) >= self.workers:
                return p
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start (exit {p.poll()})")

    @staticmethod
    def status(out: Path) -> dict | None:
        try:
            return json.loads((out / "_collector_status.json").read_text())["collector"]
        except (OSError, ValueError, KeyError):
            return None

    def count(self, out):
        # Parquet footers only: no DuckDB needed (the device machine may lack it)
        return sum(pq.ParquetFile(f).metadata.num_rows for f in out.glob("day=*/*.parquet"))

    def details(self, out):
        st = self.status(out) or {}
        rx = st.get("receiver", {})
        return {"socket_drops": st.get("socket_drops"), "written": st.get("written_records"),
                "rcvbuf_granted_bytes": st.get("rcvbuf_granted_bytes"),
                "peak_queued_bytes": rx.get("peak_queued_bytes"),
                "quarantined": sum(st.get("quarantined", {}).values())}


class Nfcapd(Peer):
    name = "nfcapd"

    def start(self, port, out):
        out.mkdir(parents=True)
        p = subprocess.Popen(["nfcapd", "-w", str(out), "-b", "127.0.0.1", "-p", str(port),
                              "-t", "3600", "-B", str(8 << 20)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        return p

    def count(self, out):
        files = sorted(out.glob("nfcapd.*"))
        n = 0
        for f in files:
            lines = subprocess.run(["nfdump", "-r", str(f), "-o", "csv"], capture_output=True,
                                   text=True).stdout.splitlines()
            if "flows,bytes,packets,avg_bps,avg_pps,avg_bpp" in lines:
                i = lines.index("flows,bytes,packets,avg_bps,avg_pps,avg_bpp")
                n += int(lines[i + 1].split(",")[0])
        return n


class Nfacctd(Peer):
    name = "nfacctd"

    def __init__(self, packets_per_record: dict):
        self.ppr = packets_per_record  # packets per datagram, to turn sums into records

    def start(self, port, out):
        out.mkdir(parents=True)
        conf = out / "nfacctd.conf"
        conf.write_text(
            f"daemonize: false\nnfacctd_ip: 127.0.0.1\nnfacctd_port: {port}\n"
            f"nfacctd_pipe_size: {8 << 20}\nplugins: print\n"
            "aggregate: src_host, dst_host, src_port, dst_port, proto\n"
            f"print_output: csv\nprint_output_file: {out}/out.csv\n"
            "print_refresh_time: 3600\nplugin_pipe_size: 67108864\n"
            "plugin_buffer_size: 65536\nlogfile: " + str(out / "log") + "\n")
        p = subprocess.Popen(["nfacctd", "-f", str(conf)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        return p

    def count(self, out):
        f = out / "out.csv"
        if not f.exists():
            return 0
        lines = f.read_text().splitlines()
        col = lines[0].split(",").index("PACKETS")
        pk = sum(int(ln.split(",")[col]) for ln in lines[1:] if ln)
        return round(pk / self.ppr["packets"] * self.ppr["records"])


def _send(dgrams: list[bytes], port: int, rate: float, seconds: float, addrs: list[str],
          first: int, step: int, conn) -> None:
    """One sender: datagrams first, first+step, ... of the replay, at ``rate``."""
    txs = []
    for a in addrs:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((a, 0))
        txs.append(s)
    n = int(rate * seconds)
    burst = max(1, int(rate) // 500)
    conn.recv()  # all senders start together
    c0, t0 = time.process_time(), time.monotonic()
    dest = ("127.0.0.1", port)
    nd, nt = len(dgrams), len(txs)
    for i in range(n):
        txs[i % nt].sendto(dgrams[(first + i * step) % nd], dest)
        if i % burst == burst - 1:
            d = t0 + (i + 1) / rate - time.monotonic()
            if d > 0:
                time.sleep(d)
    conn.send((n, time.monotonic() - t0, time.process_time() - c0))
    for s in txs:
        s.close()


def replay(dgrams: list[bytes], port: int, rate: int, seconds: float,
           exporters: int, senders: int = 1) -> dict:
    """Send at ``rate`` for ``seconds``, round-robin from ``exporters`` sockets on
    distinct loopback addresses (a collector hears many routers; SO_REUSEPORT spreads
    them over workers by source address and port, so one exporter would use one worker),
    split over ``senders`` processes (one Python process sends ~100k datagrams/s at most)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    senders = max(1, min(senders, exporters))
    procs, conns = [], []
    for k in range(senders):
        mine, theirs = ctx.Pipe()
        addrs = [f"127.0.0.{10 + e}" for e in range(k, exporters, senders)]
        p = ctx.Process(target=_send, args=(dgrams, port, rate / senders, seconds, addrs, k,
                                            senders, theirs))
        p.start()
        procs.append(p)
        conns.append(mine)
    for c in conns:
        c.send(None)
    res = [c.recv() for c in conns]
    for p in procs:
        p.join()
    n = sum(r[0] for r in res)
    wall = max(r[1] for r in res)
    return {"sent": n, "achieved_pps": round(n / wall), "senders": senders,
            "replayer_cpu_s": round(sum(r[2] for r in res), 3), "wall_s": round(wall, 3)}


def run_one(peer: Peer, dgrams: list[bytes], per_dgram: int, rate: int, seconds: float,
            tmp: Path, tag: str, exporters: int, senders: int) -> dict:
    port = free_port()
    out = tmp / f"{peer.name.replace(' ', '_')}-{rate}-{tag}"
    p = peer.start(port, out)
    cpu0, _, roles0 = tree_usage(p.pid)  # start-up (imports, config) is not per-record work
    r = replay(dgrams, port, rate, seconds, exporters, senders)
    time.sleep(1.5)
    cpu, hwm, roles = tree_usage(p.pid)
    cpu -= cpu0
    roles = {k: round(v - roles0.get(k, 0.0), 3) for k, v in roles.items()}
    p.send_signal(signal.SIGTERM if not isinstance(peer, Nfacctd) else signal.SIGINT)
    # wait4: the child's CPU including its waited-for descendants and the final write
    _, _, ru = os.wait4(p.pid, 0)
    total = ru.ru_utime + ru.ru_stime - cpu0
    p.returncode = 0
    time.sleep(0.3)
    got = peer.count(out)
    want = r["sent"] * per_dgram
    details = peer.details(out)
    shutil.rmtree(out, ignore_errors=True)  # bounded disk, run after run
    return {"peer": peer.name, "rate_pps": rate, **r, **details, "expected_records": want,
            "records": got, "lost": want - got, "cpu_s": round(cpu, 3),
            "cpu_total_s": round(total, 3), "cpu_by_role_s": roles, "peak_rss_kib": hwm,
            "cpu_us_per_record": round(total / got * 1e6, 3) if got else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="2000,5000,10000,20000,40000")
    ap.add_argument("--step", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--exporters", type=int, default=8)
    ap.add_argument("--peers", default="trunkline,nfacctd,nfcapd",
                    help="which collectors to run (comma-separated)")
    ap.add_argument("--receivers", default="process",
                    help="trunkline receive modes to run: process, inline or both")
    ap.add_argument("--senders", type=int, default=1,
                    help="replayer processes (a many-core machine needs several)")
    ap.add_argument("--max-wall", type=float, default=0,
                    help="start no run past this many seconds (0: no bound)")
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=SRC",
                    help="also run trunkline from another checkout's src/ (e.g. the base "
                         "commit's), alternating with this tree's")
    ap.add_argument("--out", default="flows_replay.json")
    args = ap.parse_args()
    began = time.monotonic()
    dgrams = [d.payload for d in read_udp(SHARED / "flows/netflow/nfv5.pcap")]
    d = FlowDecoder()
    d.feed(dgrams[0], "x")
    t = d.flush()
    per = t.num_rows
    ppr = {"records": per, "packets": sum(t.column("packets").to_pylist())}
    wanted = set(args.peers.split(","))
    trees = [None] + [(n, Path(p).resolve()) for n, p in (t.split("=", 1) for t in args.tree)]
    peers = ([Trunkline(int(w), m, tr) for m in args.receivers.split(",")
              for w in args.workers.split(",") for tr in trees]
             if "trunkline" in wanted else []) + ([Nfacctd(ppr)] if "nfacctd" in wanted else []) + (
        [Nfcapd()] if "nfcapd" in wanted else [])
    rates = [int(x) for x in args.rates.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="flowreplay-") as td:
        for rnd in range(args.rounds):
            for rate in rates:
                for peer in peers:  # alternating peers at each rate
                    if args.max_wall and time.monotonic() - began + args.step + 6 > \
                            args.max_wall:
                        print(f"skipped (--max-wall): {peer.name} at {rate}/s, round {rnd}",
                              flush=True)
                        continue
                    res = run_one(peer, dgrams, per, rate, args.step, Path(td), f"r{rnd}",
                                  args.exporters, args.senders)
                    res["round"] = rnd
                    res["load_avg"] = os.getloadavg()[0]
                    runs.append(res)
                    print(json.dumps(res), flush=True)
    summary = {}
    for peer in peers:
        rs = [r for r in runs if r["peer"] == peer.name]
        by_rate = {}
        for rate in rates:
            x = [r for r in rs if r["rate_pps"] == rate]
            if not x:
                continue
            cpu = [r["cpu_us_per_record"] for r in x if r["cpu_us_per_record"]]
            by_rate[rate] = {
                "loss_free_rounds": sum(r["lost"] == 0 for r in x), "rounds": len(x),
                "median_lost": statistics.median(r["lost"] for r in x),
                "median_achieved_pps": statistics.median(r["achieved_pps"] for r in x),
                "median_cpu_us_per_record": statistics.median(cpu) if cpu else None,
                "median_peak_rss_kib": statistics.median(r["peak_rss_kib"] for r in x),
                "median_replayer_cpu_s": statistics.median(r["replayer_cpu_s"] for r in x),
                "median_load_avg": statistics.median(r["load_avg"] for r in x)}
        ok = [rate for rate, b in by_rate.items() if b["loss_free_rounds"] == b["rounds"]]
        summary[peer.name] = {"max_loss_free_pps": max(ok, default=0), "by_rate": by_rate}
    out = {"machine": {"cpus": os.cpu_count()}, "records_per_datagram": per,
           "exporters": args.exporters, "senders": args.senders,
           "step_s": args.step, "rounds": args.rounds, "runs": runs, "summary": summary}
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    (ROOT / "bench" / "out" / args.out).write_text(json.dumps(out, indent=1))
    print(f"\nlost records (median of rounds; 0 = loss-free), {per} records per datagram, "
          f"{args.step:g} s per step, {os.cpu_count()} CPUs, "
          f"{time.monotonic() - began:.0f} s in all")
    print("| datagrams/s | " + " | ".join(summary) + " | replayer CPU s | load |")
    print("|---" * (len(summary) + 3) + "|")
    for rate in rates:
        cells = [summary[n]["by_rate"].get(rate) for n in summary]
        have = [c for c in cells if c]
        if not have:
            continue
        print(f"| {rate:,} | " + " | ".join(
            "-" if c is None else f"{c['median_lost']:,.0f}" for c in cells)
            + f" | {statistics.median(c['median_replayer_cpu_s'] for c in have):.2f}"
            + f" | {statistics.median(c['median_load_avg'] for c in have):.1f} |")
    print("\n| collector | max loss-free datagrams/s (records/s) | CPU µs/record | peak RSS MiB |")
    print("|---|---|---|---|")
    for name, sm in summary.items():
        top = sm["max_loss_free_pps"]
        b = sm["by_rate"].get(top) or next(iter(sm["by_rate"].values()), None)
        if b is None:
            continue
        print(f"| {name} | {top:,} ({top * per:,}) | {b['median_cpu_us_per_record']} | "
              f"{b['median_peak_rss_kib'] / 1024:.0f} |")

if __name__ == "__main__":
    main()
