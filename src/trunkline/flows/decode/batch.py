"""Decoded records awaiting flush, and the vectorised builder of FLOW_SCHEMA tables.

A ``Chunk`` is one data set (or one NetFlow v5 packet): a NumPy structured array plus the
few per-packet values (export time, sysUptime, exporter, sampling). At flush time the
chunks of one template become ``Records`` (each field as one native column, gathered from
every chunk at once) and then Arrow columns in bulk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import FLOW_SCHEMA
from . import columns
from .columns import ipv4_text, ipv6_text, repeat_text, text_from_bytes, uint_from_bytes
from .packet import parse_ethernet, parse_ip
from .template import ADDRESS_WIDTH, SAMPLING_VALUE_ROLES, SECTION_ROLES, Template

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


@dataclass(slots=True)
class Chunk:
    recs: np.ndarray
    export_ms: int
    uptime_ms: int | None  # NetFlow v5/v9 sysUptime; None for IPFIX
    sys_init_ms: int | None  # IPFIX systemInitTimeMilliseconds, when known
    exporter: str
    flow_type: str
    sampling: int | dict | None  # constant, sampler-id map, or None (rate is in-record)
    sections: list[bytes] | None = None  # variable-length header sections, per record


class Records:
    """The records of one template's chunks, read by role.

    Compiled (``columns.NATIVE``): every field a role needs (up to 8 bytes) is gathered
    from all the chunks in one pass into a native column. NumPy: the chunks' bytes are
    joined once and each field converted from its big-endian, strided view. The joined
    records are also what 16-byte addresses are read from.
    """

    def __init__(self, t: Template, chunks: list[Chunk]):
        self.t, self.chunks = t, chunks
        self.counts = [len(c.recs) for c in chunks]  # records per chunk, in order
        self.n = sum(self.counts)
        self._joined: np.ndarray | None = None
        self._native: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.n

    @property
    def joined(self) -> np.ndarray:
        if self._joined is None:
            c = self.chunks
            self._joined = c[0].recs if len(c) == 1 else concat_records([x.recs for x in c])
        return self._joined

    def raw(self, role: str) -> np.ndarray | None:
        """The field of ``role`` as stored (a 16-byte address, say)."""
        name = self.t.roles.get(role)
        return None if name is None else self.joined[name]

    def role(self, role: str) -> np.ndarray | None:
        """The unsigned integer field of ``role`` (None when the template has none)."""
        t = self.t
        name = t.roles.get(role)
        if name is None:
            return None
        if self._native is None:
            self._native = self._gather()
        a = self._native.get(name)
        if a is not None:
            return a
        a = self.joined[name]
        if a.dtype.kind == "V":
            a = uint_from_bytes(a, t.widths[role])
        return a

    def _gather(self) -> dict[str, np.ndarray]:
        t, parts = self.t, [c.recs for c in self.chunks]
        if not all(p.dtype == t.dtype and p.flags.c_contiguous for p in parts):
            return {}
        names, fields = [], []
        for role, name in t.roles.items():
            w = t.widths[role]
            if role not in SECTION_ROLES and ADDRESS_WIDTH.get(role, 4) == 4 and 1 <= w <= 8:
                names.append(name)
                fields.append((t.dtype.fields[name][1], w))
        if not fields:  # only addresses or sections: nothing to gather
            return {}
        cols = columns.gather(parts, t.dtype.itemsize, fields)
        return {} if cols is None else dict(zip(names, cols, strict=True))


def _first(recs: Records, *roles: str) -> np.ndarray | None:
    for r in roles:
        a = recs.role(r)
        if a is not None:
            return a
    return None


def _ntp_ms(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64)
    secs = (v >> np.uint64(32)).astype(np.int64) - NTP_EPOCH_OFFSET
    frac = ((v & np.uint64(0xFFFFFFFF)) * np.uint64(1000)) >> np.uint64(32)
    return secs * 1000 + frac.astype(np.int64)


def _times(t: Template, recs: Records, chunks: list[Chunk], counts: list[int]):
    export = np.repeat(np.array([c.export_ms for c in chunks], np.int64), counts)

    def one(which: str) -> np.ndarray | None:
        s, ms, us, ns, dl, up = (f"{which}_s", f"{which}_ms", f"{which}_us", f"{which}_ns",
                                 f"{which}_delta_us", "first_up" if which == "start" else "last_up")
        a = recs.role(ms)
        if a is not None:
            return a.astype(np.int64)
        a = recs.role(s)
        if a is not None:
            return a.astype(np.int64) * 1000
        a = _first(recs, us, ns)
        if a is not None:
            return _ntp_ms(a)
        a = recs.role(dl)
        if a is not None:
            return export - (a.astype(np.int64) // 1000)
        a = recs.role(up)
        if a is not None:
            if chunks[0].uptime_ms is not None:  # NetFlow: relative to the header's sysUptime
                uptime = np.repeat(np.array([c.uptime_ms for c in chunks], np.int64), counts)
                delta = (uptime - a.astype(np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)
                return export - delta
            init = [c.sys_init_ms for c in chunks]
            if all(i is not None for i in init):  # IPFIX: relative to systemInitTime
                return np.repeat(np.array(init, np.int64), counts) + a.astype(np.int64)
        return None

    start, end = one("start"), one("end")
    if start is None and end is None:
        obs = recs.role("obs_ms")  # an event (NAT) rather than a flow
        if obs is not None:
            start = obs.astype(np.int64)
    if start is None:
        start = end if end is not None else export
    if end is None:
        end = start
    return start, end


def _sampling(t: Template, recs: Records, chunks: list[Chunk], counts: list[int]):
    a = _first(recs, *SAMPLING_VALUE_ROLES)
    if a is None and "spi" in t.roles and "sps" in t.roles:
        spi = recs.role("spi").astype(np.uint64)
        sps = recs.role("sps").astype(np.uint64)
        a = np.where(spi > 0, (spi + sps) // np.maximum(spi, 1), 1)
    if a is None:
        ids = _first(recs, "sampler_id", "selector_id")
        consts = [c.sampling for c in chunks]
        if ids is None or not any(isinstance(c, dict) for c in consts):
            vals = [c if isinstance(c, int) else _default_rate(c) for c in consts]
            a = np.repeat(np.array(vals, np.uint64), counts)
        else:
            a = np.empty(len(recs), np.uint64)
            pos = 0
            for c, k in zip(chunks, counts, strict=True):
                part = ids[pos : pos + k]
                m = c.sampling if isinstance(c.sampling, dict) else {}
                dflt = c.sampling if isinstance(c.sampling, int) else _default_rate(m)
                for u in np.unique(part):
                    a[pos : pos + k][part == u] = m.get(int(u), dflt)
                pos += k
    a = a.astype(np.uint64)
    a[a == 0] = 1
    return np.minimum(a, 0xFFFFFFFF).astype(np.uint32)


def _default_rate(m: dict | int | None) -> int:
    if isinstance(m, int):
        return m
    if not m:
        return 1
    if None in m:
        return m[None]
    vals = set(m.values())
    return vals.pop() if len(vals) == 1 else 1


def _addresses(recs: Records, v4role: str, v6role: str):
    a4 = recs.role(v4role)
    raw6 = recs.raw(v6role)
    if a4 is not None and raw6 is not None:
        use6 = (a4 == 0) & np.ascontiguousarray(raw6).view(np.uint8).reshape(-1, 16).any(axis=1)
        if use6.any():
            return pc.if_else(pa.array(use6), ipv6_text(raw6), ipv4_text(a4))
        return ipv4_text(a4)
    if a4 is not None:
        return ipv4_text(a4)
    if raw6 is not None:
        return ipv6_text(raw6)
    return None


def _section_keys(t: Template, chunks: list[Chunk]) -> list[dict] | None:
    """Flow keys parsed from dataLinkFrameSection / ipHeaderPacketSection, per record."""
    role = "dl_frame" if "dl_frame" in t.sections else "ip_section" if t.sections else None
    if role is None:
        return None
    parse = parse_ethernet if role == "dl_frame" else parse_ip
    out: list[dict] = []
    name = t.roles.get(role)
    for c in chunks:
        if c.sections is not None:
            out.extend(parse(s) for s in c.sections)
        elif name is not None:
            out.extend(parse(r.tobytes()) for r in c.recs[name])
        else:
            out.extend({} for _ in range(len(c.recs)))
    return out


def _uint(a: np.ndarray | None, n: int, dtype) -> pa.Array:
    if a is None:
        return pa.nulls(n, pa.from_numpy_dtype(np.dtype(dtype)))
    return pa.array(a.astype(dtype, copy=False))


def concat_records(parts: list[np.ndarray]) -> np.ndarray:
    """Records of one template (one dtype), concatenated as bytes.

    ``np.concatenate`` of structured arrays promotes their dtypes pairwise (NumPy 2:
    ~100 µs per part, thousands of parts per batch, most of a batch's build time); the
    parts of a template share one dtype, so their bytes are simply joined.
    """
    dtype = parts[0].dtype
    raw = np.concatenate([np.ascontiguousarray(p).view(np.uint8).reshape(-1) for p in parts])
    return raw.view(dtype)


def export_times(chunks: list[Chunk]) -> np.ndarray:
    """Each record's export header time (ms), the reference its own times are checked
    against before they reach the store."""
    return np.repeat(np.array([c.export_ms for c in chunks], np.int64),
                     [len(c.recs) for c in chunks])


def build_table(t: Template, chunks: list[Chunk]) -> pa.Table:
    recs = Records(t, chunks)
    counts = recs.counts
    n = len(recs)
    start, end = _times(t, recs, chunks, counts)
    src = _addresses(recs, "src4", "src6")
    dst = _addresses(recs, "dst4", "dst6")
    src_port, dst_port, proto = (recs.role(r) for r in ("src_port", "dst_port", "proto"))
    tcp_flags = recs.role("tcp_flags")
    keys = _section_keys(t, chunks) if src is None else None
    if keys is not None:
        src = text_from_bytes([k.get("src_addr") for k in keys])
        dst = text_from_bytes([k.get("dst_addr") for k in keys])

        def from_keys(name: str, have: np.ndarray | None, dtype) -> np.ndarray:
            if have is not None:
                return have
            return np.array([k.get(name, 0) for k in keys], dtype)

        src_port = from_keys("src_port", src_port, np.uint16)
        dst_port = from_keys("dst_port", dst_port, np.uint16)
        proto = from_keys("proto", proto, np.uint8)
        if tcp_flags is None:
            tcp_flags = np.array([k.get("tcp_flags", 0) for k in keys], np.uint8)
    nbytes = _first(recs, "bytes", "bytes_total", "post_bytes")
    npkts = _first(recs, "packets", "packets_total", "post_packets")
    if nbytes is None and npkts is None and "frame_size" in t.roles:
        nbytes = recs.role("frame_size")  # a sampled frame (packet sampling export)
        npkts = np.ones(n, np.uint64)
    zeros = np.zeros(n, np.uint64)
    cols = {
        "time_start": pa.array(start, pa.timestamp("ms", tz="UTC")),
        "time_end": pa.array(end, pa.timestamp("ms", tz="UTC")),
        "exporter": repeat_text([c.exporter for c in chunks], counts),
        "flow_type": repeat_text([c.flow_type for c in chunks], counts),
        "src_addr": src if src is not None else pa.nulls(n, pa.string()),
        "dst_addr": dst if dst is not None else pa.nulls(n, pa.string()),
        "src_port": _uint(src_port, n, np.uint16),
        "dst_port": _uint(dst_port, n, np.uint16),
        "proto": _uint(proto, n, np.uint8),
        "bytes": _uint(nbytes if nbytes is not None else zeros, n, np.uint64),
        "packets": _uint(npkts if npkts is not None else zeros, n, np.uint64),
        "sampling_rate": pa.array(_sampling(t, recs, chunks, counts)),
        "in_if": _uint(_first(recs, "in_if", "in_phys"), n, np.uint32),
        "out_if": _uint(_first(recs, "out_if", "out_phys"), n, np.uint32),
        "src_as": _uint(recs.role("src_as"), n, np.uint32),
        "dst_as": _uint(recs.role("dst_as"), n, np.uint32),
        "tcp_flags": _uint(tcp_flags, n, np.uint8),
        "rtt_us": _uint(recs.role("rtt_us"), n, np.uint32),
        "retransmits": _uint(recs.role("retransmits"), n, np.uint32),
        "delivery_rate_bps": _uint(recs.role("delivery_rate_bps"), n, np.uint64),
    }
    return pa.Table.from_arrays([cols[f.name] for f in FLOW_SCHEMA], schema=FLOW_SCHEMA)


def rows_table(rows: dict[str, list]) -> pa.Table:
    """Row-wise decoded records (sFlow) to a FLOW_SCHEMA table."""
    n = len(rows["time_start"]) if rows else 0
    arrays = []
    for f in FLOW_SCHEMA:
        vals = rows.get(f.name)
        arrays.append(pa.array(vals, f.type) if vals is not None else pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)
