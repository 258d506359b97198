"""``FlowDecoder``: one datagram in, typed records pending; ``flush()`` -> an Arrow table.

Sans-I/O and single-threaded: the caller (UDP collector, pcap reader, benchmark) owns the
socket, the clock and the batching policy. A malformed datagram is counted per exporter
and reason and skipped; it can only touch templates keyed by its own exporter address.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..schema import FLOW_SCHEMA
from .batch import build_table, export_times, rows_table
from .counters import Counters, DecodeError
from .netflow5 import decode_v5
from .sflow import decode_sflow
from .template import TemplateCache
from .templated import DecodeState, decode_ipfix, decode_v9


class FlowDecoder:
    def __init__(self, cache: TemplateCache | None = None):
        self.state = DecodeState(cache=cache or TemplateCache(), counters=Counters())
        self.last_internal_error: str | None = None  # the latest decoder bug, for status
        self.cache.on_evict = self._evicted

    def _evicted(self, dom) -> None:
        """A domain evicted for room: count it, and the buffered sets it held."""
        c = self.counters.get(dom.exporter)
        c.evicted_domains += 1
        if dom.pending:
            self.counters.drop(dom.exporter, "evicted_buffered_sets", len(dom.pending))

    @property
    def counters(self) -> Counters:
        return self.state.counters

    @property
    def cache(self) -> TemplateCache:
        return self.state.cache

    @property
    def pending_records(self) -> int:
        return self.state.pending_records

    def feed(self, data: bytes, exporter: str, recv_ms: int = 0) -> bool:
        """Decode one datagram from ``exporter``; False if it was malformed (and counted).

        All or nothing: the records of a datagram that fails half-way never reach the
        table; they are counted as ``discarded_records`` (and the datagram as a drop).
        """
        st = self.state
        st.counters.get(exporter).packets += 1
        try:
            if len(data) < 4:
                raise DecodeError("short_header", f"{len(data)} bytes")
            version = (data[0] << 8) | data[1]
            if version == 10:
                decode_ipfix(data, exporter, st, recv_ms)
            elif version == 9:
                decode_v9(data, exporter, st, recv_ms)
            elif version == 5:
                decode_v5(data, exporter, st)
            elif version == 0 and data[2] == 0 and data[3] == 5:
                decode_sflow(data, exporter, st, recv_ms)
            else:
                raise DecodeError("unknown_version", str(version))
        except DecodeError as e:
            st.rollback(exporter)
            st.counters.drop(exporter, e.reason)
            return False
        except (ValueError, IndexError, OverflowError, TypeError):  # defensive
            st.rollback(exporter)
            st.counters.drop(exporter, "malformed")
            return False
        except Exception as e:  # noqa: BLE001 - a decoder bug must not stop collection
            st.rollback(exporter)
            st.counters.drop(exporter, "internal_error")
            self.last_internal_error = f"{type(e).__name__}: {e}"
            return False
        st.commit()
        return True

    def detach(self) -> PendingBatch:
        """Hand over everything decoded so far (cheap); build it later, on any thread."""
        st = self.state
        batch = PendingBatch(st.pending, st.sflow_rows, st.pending_records)
        st.pending = {}
        st.sflow_rows = {}
        st.pending_records = 0
        return batch

    def flush(self) -> pa.Table:
        """Everything decoded since the last flush, as one FLOW_SCHEMA table."""
        return self.detach().to_table()


class PendingBatch:
    """Typed-but-unbuilt records: NumPy chunks per template plus sFlow rows."""

    def __init__(self, chunks: dict, sflow_rows: dict, records: int):
        self.chunks, self.sflow_rows, self.records = chunks, sflow_rows, records
        self.build_errors: dict[str, int] = {}  # exporter -> records that failed to build

    def to_table(self) -> pa.Table:
        return self.to_table_with_reference()[0]

    def to_table_with_reference(self) -> tuple[pa.Table, np.ndarray]:
        """The table, and each record's export header time in ms (sFlow: arrival time),
        for ``FlowStore.write``'s time sanity check."""
        tables, refs = [], []
        for t, chunks in self.chunks.items():
            try:  # one template's records at a time: a bad group never sinks the batch
                tables.append(build_table(t, chunks))
            except Exception:  # noqa: BLE001 - counted per exporter, the rest is written
                for c in chunks:
                    self.build_errors[c.exporter] = self.build_errors.get(c.exporter, 0) + \
                        len(c.recs)
                continue
            refs.append(export_times(chunks))
        if self.sflow_rows and self.sflow_rows.get("time_start"):
            tables.append(rows_table(self.sflow_rows))
            refs.append(np.array(self.sflow_rows["time_start"], np.int64))
        if not tables:
            return FLOW_SCHEMA.empty_table(), np.empty(0, np.int64)
        if len(tables) == 1:
            return tables[0], refs[0]
        return pa.concat_tables(tables), np.concatenate(refs)


def decode_packets(packets, exporter: str = "127.0.0.1") -> pa.Table:
    """Convenience: decode an iterable of datagrams (bytes) from one exporter."""
    d = FlowDecoder()
    for p in packets:
        d.feed(p, exporter)
    return d.flush()
