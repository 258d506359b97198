"""The mover's own flows: each connection of a transfer as flow records (FLOW_SCHEMA).

One TCP connection becomes one record per direction that carried bytes:

- client -> server: ``bytes_out`` bytes, ``segs_out`` packets, and the sender-side TCP_INFO
  of our socket: smoothed RTT, total retransmits, delivery rate;
- server -> client: ``bytes_in`` bytes, ``segs_in`` packets and the same RTT (a property of
  the path); retransmits and delivery rate are the *server's* sending, which our socket
  cannot see, so they stay null (IPFIX has no null: they are sent as 0).

Byte counts are what went through the socket (HTTP payload plus HTTP headers, not TCP/IP
headers); packets are TCP segments from TCP_INFO (null where TCP_INFO was unavailable).
Records carry ``flow_type`` 'trunkline', exporter 'trunkline', protocol 6, unsampled.

Sinks: a flow store directory (``FlowStore.write``) or an IPFIX collector
(``udp://HOST:PORT``, with trunkline's enterprise fields, PEN 32473). Sans-I/O where it
can be: ``connection_records`` is values in, values out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow as pa

EXPORTER = "trunkline"
FLOW_TYPE = "trunkline"


def _endpoint(text: str) -> tuple[str, int]:
    """'1.2.3.4:80' or '::1:80' (as ConnectionStats.to_dict writes them) -> (addr, port)."""
    host, _, port = str(text).rpartition(":")
    return host.strip("[]"), int(port or 0)


def _ms(t: float | None) -> int:
    return int(round(float(t or 0.0) * 1000))


def connection_records(connections: Iterable[Mapping]) -> list[dict]:
    """Per-connection dicts (``TransferResult.connections``) -> flow records as dicts."""
    out: list[dict] = []
    for c in connections:
        local, remote = _endpoint(c["local"]), _endpoint(c["remote"])
        if not local[0] or not remote[0]:
            continue  # never connected: nothing went over the wire
        t0 = _ms(c.get("started"))
        t1 = max(_ms(c.get("ended")) or t0, t0)
        base = {"time_start": t0, "time_end": t1, "exporter": EXPORTER, "flow_type": FLOW_TYPE,
                "proto": 6, "sampling_rate": 1, "rtt_us": c.get("rtt_us")}
        if c.get("bytes_out"):
            out.append({**base, "src_addr": local[0], "src_port": local[1],
                        "dst_addr": remote[0], "dst_port": remote[1],
                        "bytes": int(c["bytes_out"]), "packets": c.get("segs_out"),
                        "retransmits": c.get("retransmits"),
                        "delivery_rate_bps": c.get("delivery_rate_bps")})
        if c.get("bytes_in"):
            out.append({**base, "src_addr": remote[0], "src_port": remote[1],
                        "dst_addr": local[0], "dst_port": local[1],
                        "bytes": int(c["bytes_in"]), "packets": c.get("segs_in"),
                        "retransmits": None, "delivery_rate_bps": None})
    return out


def connection_flows(connections: Iterable[Mapping]) -> pa.Table:
    """Per-connection dicts -> an Arrow table in FLOW_SCHEMA (missing columns null)."""
    from ..flows.schema import FLOW_SCHEMA, conform

    recs = connection_records(connections)
    if not recs:
        return FLOW_SCHEMA.empty_table()
    t = pa.Table.from_pylist(recs)
    ts = pa.timestamp("ms", tz="UTC")
    for name in ("time_start", "time_end"):
        t = t.set_column(t.schema.get_field_index(name), name, t.column(name).cast(ts))
    return conform(t)


def check_flows_to(url: str) -> str:
    """Validate an IPFIX destination (``udp://HOST:PORT``); returns it unchanged."""
    u = urlparse(url)
    try:
        port = u.port
    except ValueError:
        port = None
    if u.scheme != "udp" or not u.hostname or not port:
        raise ValueError(f"--flows-to must be udp://HOST:PORT, not {url!r}")
    return url


@dataclass
class FlowExport:
    records: int = 0
    store_files: int = 0       # Parquet files written into the store
    ipfix_messages: int = 0    # IPFIX datagrams sent


def export_flows(connections: Iterable[Mapping], *, flows_to: str | None = None,
                 flows_store: str | os.PathLike[str] | None = None) -> FlowExport:
    """Write a transfer's connections as flows into ``flows_store`` and/or send them as
    IPFIX to ``flows_to`` (``udp://HOST:PORT``)."""
    if flows_to:
        check_flows_to(flows_to)
    table = connection_flows(connections)
    res = FlowExport(records=table.num_rows)
    if not table.num_rows:
        return res
    if flows_store:
        from ..flows.store import FlowStore

        store = FlowStore(flows_store)
        before = len(store.files())
        store.write(table)
        res.store_files = len(store.files()) - before
    if flows_to:
        from .ipfix_export import send_ipfix

        res.ipfix_messages = send_ipfix(table, flows_to)
    return res
