"""Where a collected record's CPU goes (issue 15): the collector's stages, one at a time.

The NetFlow v5 datagrams of ``netflow/nfv5.pcap`` (the replay of ``flows_replay.py``)
pass, in this process and without sockets, through each stage of a worker: decode
(``FlowDecoder.feed`` per datagram), detach, build (Arrow table + reference times), and
the store's write (time sanity, day split, Parquet). Each stage is timed with
``time.process_time`` (CPU seconds of this process), ``--rounds`` times, medians; then
one round under cProfile prints the top functions of build and write.

Usage: python bench/flows_stages.py [--records 500000] [--rounds 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trunkline.flows.decode import FlowDecoder  # noqa: E402
from trunkline.flows.sources.pcap import read_udp  # noqa: E402
from trunkline.flows.store import FlowStore  # noqa: E402

SHARED = Path(os.environ.get("TRUNKLINE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def one_round(dgrams: list[bytes], n_dgrams: int, root: Path) -> dict:
    now = int(time.time() * 1000)
    d = FlowDecoder()
    feed = d.feed
    c0 = time.process_time()
    for i in range(n_dgrams):
        feed(dgrams[i % len(dgrams)], f"127.0.0.{10 + i % 8}", now)
    c1 = time.process_time()
    batch = d.detach()
    c2 = time.process_time()
    table, ref = batch.to_table_with_reference()
    c3 = time.process_time()
    store = FlowStore(root)
    written = store.write(table, ref, now_ms=now)
    c4 = time.process_time()
    return {"records": table.num_rows, "written": written, "decode": c1 - c0,
            "detach": c2 - c1, "build": c3 - c2, "write": c4 - c3}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    dgrams = [d.payload for d in read_udp(SHARED / "flows/netflow/nfv5.pcap")]
    per = FlowDecoder()
    per.feed(dgrams[0], "x")
    n_dgrams = args.records // per.flush().num_rows
    td = Path(tempfile.mkdtemp(prefix="flowstages-"))
    try:
        runs = [one_round(dgrams, n_dgrams, td / f"r{k}") for k in range(args.rounds)]
        recs = runs[0]["records"]
        print(f"load average {os.getloadavg()}; {recs} records in {n_dgrams} datagrams; "
              f"CPU µs per record, median of {args.rounds}:")
        for stage in ("decode", "detach", "build", "write"):
            v = statistics.median(r[stage] for r in runs)
            print(f"  {stage:7s} {v / recs * 1e6:7.3f}  ({v:.3f} s)")
        tot = statistics.median(sum(r[s] for s in ("decode", "detach", "build", "write"))
                                for r in runs)
        print(f"  total   {tot / recs * 1e6:7.3f}")
        if args.profile:
            pr = cProfile.Profile()
            pr.enable()
            one_round(dgrams, n_dgrams, td / "prof")
            pr.disable()
            s = io.StringIO()
            pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(25)
            print(s.getvalue())
    finally:
        shutil.rmtree(td, ignore_errors=True)


if __name__ == "__main__":
    main()
