"""Files into the store: pcap/pcapng captures of exports, flow logs, nfdump CSV.

Captures are decoded in file order with one decoder per call, so templates learned from
one file serve the next (feed the template capture first). Batches are bounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..decode import FlowDecoder
from ..store import FlowStore
from .logs import is_nfdump_csv, read_flow_log, read_nfdump_csv
from .pcap import read_udp

PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
               b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")


def is_capture(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in PCAP_MAGICS


def ingest_files(paths: Iterable[str | Path], store: FlowStore, *,
                 ports: set[int] | None = None, mapping: dict[str, str] | None = None,
                 batch_records: int = 500_000, decoder: FlowDecoder | None = None) -> dict:
    """Decode and store every file; returns counters (records written, per-exporter)."""
    dec = decoder or FlowDecoder()
    written = 0
    for p in map(Path, paths):
        if is_capture(p):
            for d in read_udp(p):
                if ports and d.dport not in ports:
                    continue
                dec.feed(d.payload, d.src, d.ts_ms)
                if dec.pending_records >= batch_records:
                    written += store.write(*dec.detach().to_table_with_reference())
        elif p.suffix.lower() == ".csv" and is_nfdump_csv(p):
            written += store.write(read_nfdump_csv(p))
        elif p.suffix.lower() in (".csv", ".parquet", ".pq"):
            written += store.write(read_flow_log(p, mapping))
        else:
            raise ValueError(f"{p}: not a pcap/pcapng capture, CSV or Parquet flow log")
    written += store.write(*dec.detach().to_table_with_reference())
    out = dec.counters.as_dict()
    out["written_records"] = written
    out["quarantined"] = dict(store.quarantined)
    return out
