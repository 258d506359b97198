"""The long fuzz campaign against the live collector (issue 15).

``trunkline flows collect`` in a subprocess; N hostile datagrams (structure-aware mutations
of every shared capture + crafted template/withdraw/option/time sequences, from 100
loopback addresses) with a legitimate exporter (127.0.0.1: a real IPFIX, NetFlow v5 and
sFlow capture) sending one datagram after every LEGIT_EVERY hostile ones. Recorded:
datagrams sent, legitimate records expected vs stored, peak RSS (VmHWM) and sampled RSS,
drops by reason, quarantined records, evictions, the collector's CPU seconds.

Usage: .venv/bin/python bench/flows_fuzz.py [--datagrams 120000] [--rate 6000] [--seed 15]
Writes bench/out/flows_fuzz.json and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from trunkline.flows.decode import FlowDecoder  # noqa: E402
from trunkline.flows.sources.collector import read_status  # noqa: E402
from trunkline.flows.sources.pcap import read_udp  # noqa: E402
from trunkline.flows.store import FlowStore  # noqa: E402
from trunkline.testing.flowfuzz import (  # noqa: E402
    Mutator,
    live_campaign,
    load_seeds,
    rss_kib,
    shift_to,
)

SHARED = Path(os.environ.get("TRUNKLINE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datagrams", type=int, default=120_000)
    ap.add_argument("--rate", type=int, default=6000)
    ap.add_argument("--legit-every", type=int, default=20)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--template-budget", default="64")
    ap.add_argument("--exporter-quota", default="4")
    args = ap.parse_args()
    flows = SHARED / "flows"
    now = int(time.time())  # the legitimate exporter is live: its times are now
    legit = [shift_to(next(iter(read_udp(flows / f))).payload, now) for f in (
        "netflow/physicalinterfaces.pcap", "netflow/nfv5.pcap", "sflow/data-1140.pcap")]
    with tempfile.TemporaryDirectory(prefix="flowfuzz-") as td, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        store = Path(td) / "store"
        cmd = [sys.executable, "-m", "trunkline.cli.main", "flows", "collect", "--store",
               str(store), "--listen", f"127.0.0.1:{port}", "--flush-interval", "2",
               "--template-budget", args.template_budget, "--exporter-quota",
               args.exporter_quota]
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "src"),
                                     "PYTHONUNBUFFERED": "1"})
        assert "collecting on" in proc.stderr.readline()
        hostile = Mutator(load_seeds(flows), random.Random(args.seed)).stream()
        r = live_campaign(port, hostile, args.datagrams, legit, legit_every=args.legit_every,
                          rate_pps=args.rate, pid=proc.pid, max_seconds=1800)
        time.sleep(3)
        alive = proc.poll() is None
        peak = rss_kib(proc.pid, "VmHWM") if alive else None
        proc.send_signal(signal.SIGTERM)
        _, status, ru = os.wait4(proc.pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        st = read_status(store)
        d = FlowDecoder()
        for p in r["legit_datagrams"]:
            d.feed(p, "127.0.0.1", int(time.time() * 1000))
        want = d.flush().num_rows
        got = FlowStore(store).query(
            "SELECT count(*) FROM flows WHERE exporter = '127.0.0.1'").column(0)[0].as_py()
        col = st["collector"]
        out = {
            "command": " ".join(["bench/flows_fuzz.py", f"--datagrams {args.datagrams}",
                                 f"--rate {args.rate}", f"--seed {args.seed}"]),
            "collector": " ".join(cmd[1:]).replace(td, "TMP"),
            "cpus": os.cpu_count(), "load_avg_start": os.getloadavg(),
            "hostile_sent": r["hostile_sent"], "legit_sent": r["legit_sent"],
            "datagrams_sent": r["datagrams_sent"], "seconds": r["seconds"],
            "achieved_pps": r["achieved_pps"], "backpressure_wait_s": r["backpressure_wait_s"],
            "alive_after": alive, "exit_code": rc, "socket_drops": col["socket_drops"],
            "datagrams_received": st["totals"]["packets"],
            "legit_records_expected": want, "legit_records_stored": got,
            "rss_start_kib": r["rss_start_kib"], "rss_peak_sampled_kib":
                r["rss_peak_sampled_kib"], "rss_hwm_kib": peak,
            "collector_cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "drops": dict(sorted(st["totals"]["drops"].items(), key=lambda kv: -kv[1])),
            "discarded_records": st["totals"]["discarded_records"],
            "evicted_domains": st["totals"]["evicted_domains"],
            "quarantined": col["quarantined"], "template_bytes_end": col["template_bytes"],
            "write_errors": col["write_errors"], "build_errors": col["build_errors"],
            "records_written_all_exporters": col["written_records"],
        }
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    (ROOT / "bench" / "out" / "flows_fuzz.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
