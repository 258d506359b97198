"""The one Arrow schema of a flow record, shared by every source, the store and the report.

``bytes``/``packets`` are kept as exported (sampled); ``sampling_rate`` travels with
each record so totals are renormalised at query time, never at ingest.
"""

from __future__ import annotations

import pyarrow as pa

FLOW_SCHEMA = pa.schema(
    [
        pa.field("time_start", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("time_end", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("exporter", pa.string()),          # exporter address (or source name)
        pa.field("flow_type", pa.string()),         # netflow5 | netflow9 | ipfix | sflow | log | trunkline
        pa.field("src_addr", pa.string()),          # textual IPv4/IPv6; DuckDB casts to INET
        pa.field("dst_addr", pa.string()),
        pa.field("src_port", pa.uint16()),
        pa.field("dst_port", pa.uint16()),
        pa.field("proto", pa.uint8()),
        pa.field("bytes", pa.uint64()),
        pa.field("packets", pa.uint64()),
        pa.field("sampling_rate", pa.uint32()),     # 1 = unsampled
        pa.field("in_if", pa.uint32()),
        pa.field("out_if", pa.uint32()),
        pa.field("src_as", pa.uint32()),
        pa.field("dst_as", pa.uint32()),
        pa.field("tcp_flags", pa.uint8()),
        # trunkline's own enterprise fields (the mover's TCP_INFO), null for other sources
        pa.field("rtt_us", pa.uint32()),
        pa.field("retransmits", pa.uint32()),
        pa.field("delivery_rate_bps", pa.uint64()),
    ]
)

FLOW_COLUMNS = tuple(FLOW_SCHEMA.names)


def empty_table() -> pa.Table:
    return FLOW_SCHEMA.empty_table()


def conform(table: pa.Table) -> pa.Table:
    """Add missing columns as nulls and cast to FLOW_SCHEMA, so every writer agrees."""
    cols = []
    for f in FLOW_SCHEMA:
        if f.name in table.column_names:
            cols.append(table.column(f.name).cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=FLOW_SCHEMA)
