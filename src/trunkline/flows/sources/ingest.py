"""Files into the store: pcap/pcapng captures of exports, flow logs, nfdump CSV.

Captures are decoded in file order with one decoder per call, so templates learned from
one file serve the next (feed the template capture first). Batches are bounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ...errors import DataError
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
    """Decode and store every file; returns counters (records written, per-exporter).

    Every file's kind is known before anything is stored (a file of no known kind is a
    ``ValueError``, nothing stored). A flow log a value of which the schema cannot hold
    is a ``DataError``; when files before it were stored, it names them and their
    records, so a rerun after a fix does not store them twice."""
    dec = decoder or FlowDecoder()
    kinds = [(p, _kind(p)) for p in map(Path, paths)]
    written = 0
    done: list[str] = []
    for p, kind in kinds:
        try:
            written += _ingest_file(p, kind, dec, store, ports, mapping, batch_records)
        except DataError as e:
            if not done:
                raise
            written += store.write(*dec.detach().to_table_with_reference())
            raise DataError(f"{e} (stored before it: {written} records from "
                            f"{', '.join(done)}; ingest only the files after them "
                            "again)") from None
        done.append(p.name)
    written += store.write(*dec.detach().to_table_with_reference())
    out = dec.counters.as_dict()
    out["written_records"] = written
    out["quarantined"] = dict(store.quarantined)
    return out


def _kind(p: Path) -> str:
    if is_capture(p):
        return "capture"
    if p.suffix.lower() == ".csv" and is_nfdump_csv(p):
        return "nfdump"
    if p.suffix.lower() in (".csv", ".parquet", ".pq"):
        return "log"
    raise ValueError(f"{p}: not a pcap/pcapng capture, CSV or Parquet flow log")


def _ingest_file(p: Path, kind: str, dec: FlowDecoder, store: FlowStore,
                 ports: set[int] | None, mapping: dict[str, str] | None,
                 batch_records: int) -> int:
    """Records of ``p`` written (a capture's last ones may wait in ``dec``)."""
    if kind == "nfdump":
        return store.write(read_nfdump_csv(p))
    if kind == "log":
        return store.write(read_flow_log(p, mapping))
    written = 0
    for d in read_udp(p):
        if ports and d.dport not in ports:
            continue
        dec.feed(d.payload, d.src, d.ts_ms)
        if dec.pending_records >= batch_records:
            written += store.write(*dec.detach().to_table_with_reference())
    return written
