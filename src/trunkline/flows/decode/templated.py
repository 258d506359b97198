"""NetFlow v9 (RFC 3954) and IPFIX (RFC 7011): headers, (options) templates, data sets.

Sans-I/O: ``decode_v9``/``decode_ipfix`` take one datagram and a ``DecodeState``, update
the template cache, and append ``Chunk``s of undecoded-but-typed records. Data sets whose
template is unknown are buffered per domain (bounded) and replayed, in order, when the
template arrives; on overflow they are dropped and counted, never guessed at.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from .batch import Chunk
from .counters import Counters, DecodeError
from .template import (
    BUFFERED_SET_OVERHEAD,
    TEMPLATE_BASE_COST,
    TEMPLATE_FIELD_COST,
    VARLEN,
    BudgetExceeded,
    DomainState,
    Template,
    TemplateCache,
    template_cost,
)

_HDR_V9 = struct.Struct(">HHIIII")
_HDR_IPFIX = struct.Struct(">HHIII")
_SET = struct.Struct(">HH")
MAX_FIELDS = 512  # per template; real templates have tens


ROW_FIELDS = ("time_start", "time_end", "exporter", "flow_type", "src_addr", "dst_addr",
              "src_port", "dst_port", "proto", "bytes", "packets", "sampling_rate", "in_if",
              "out_if", "src_as", "dst_as", "tcp_flags")
"""The columns of a row-wise (sFlow) record, in the order the decoder stages them."""


@dataclass
class DecodeState:
    """The decoder's state: template cache, counters, and records awaiting flush.

    A datagram is all or nothing: its records are *staged* while it is decoded and reach
    ``pending`` only when the whole datagram decoded (``commit``); a datagram that fails
    half-way is ``rollback``-ed and its decoded records are counted as discarded, so every
    record is counted exactly once, as stored or as discarded.
    """

    cache: TemplateCache = field(default_factory=TemplateCache)
    counters: Counters = field(default_factory=Counters)
    pending: dict[Template, list[Chunk]] = field(default_factory=dict)
    pending_records: int = 0
    sflow_rows: dict[str, list] = field(default_factory=dict)
    staged: list[tuple[Template, Chunk]] = field(default_factory=list)
    staged_rows: list[dict] = field(default_factory=list)  # sFlow records, row-wise
    staged_buffered: list[tuple[DomainState, tuple]] = field(default_factory=list)

    def add(self, t: Template, chunk: Chunk) -> None:
        self.staged.append((t, chunk))

    def _move(self, items: list[tuple[Template, Chunk]]) -> None:
        for t, chunk in items:
            lst = self.pending.get(t)
            if lst is None:
                self.pending[t] = [chunk]
            else:
                lst.append(chunk)
            n = len(chunk.recs)
            self.pending_records += n
            self.counters.get(chunk.exporter).records += n

    def commit_since(self, mark: int) -> None:
        """Commit what was staged after ``mark`` (replayed sets of earlier datagrams)."""
        items = self.staged[mark:]
        del self.staged[mark:]
        self._move(items)

    def commit(self) -> None:
        self._move(self.staged)
        self.staged.clear()
        if self.staged_rows:
            rows = self.sflow_rows
            if not rows:
                rows.update({k: [] for k in ROW_FIELDS})
            for rec in self.staged_rows:
                for k in ROW_FIELDS:
                    rows[k].append(rec.get(k))
                self.counters.get(rec["exporter"]).records += 1
            self.pending_records += len(self.staged_rows)
            self.staged_rows.clear()
        self.staged_buffered.clear()

    def rollback(self, exporter: str) -> int:
        """Forget what the failed datagram staged; returns the records discarded."""
        n = sum(len(c.recs) for _, c in self.staged) + len(self.staged_rows)
        self.staged.clear()
        self.staged_rows.clear()
        for dom, entry in self.staged_buffered:
            try:
                dom.pending.remove(entry)
            except ValueError:
                continue  # already replayed or evicted
            dom.pending_bytes -= len(entry[1])
            self.cache.release(dom, len(entry[1]) + BUFFERED_SET_OVERHEAD)
            self.counters.get(exporter).buffered_sets -= 1
        self.staged_buffered.clear()
        if n:
            self.counters.get(exporter).discarded_records += n
        return n


@dataclass(slots=True)
class _Hdr:
    version: int
    export_ms: int
    uptime_ms: int | None
    domain_id: int
    exporter: str
    recv_ms: int = 0


def decode_v9(data: bytes, exporter: str, st: DecodeState, recv_ms: int = 0) -> None:
    if len(data) < 20:
        raise DecodeError("short_header", f"{len(data)} bytes")
    _, _count, uptime, secs, _seq, source_id = _HDR_V9.unpack_from(data)
    hdr = _Hdr(9, secs * 1000, uptime, source_id, exporter, recv_ms)
    _walk_sets(memoryview(data), 20, len(data), hdr, st)


def decode_ipfix(data: bytes, exporter: str, st: DecodeState, recv_ms: int = 0) -> None:
    if len(data) < 16:
        raise DecodeError("short_header", f"{len(data)} bytes")
    _, length, export_time, _seq, domain = _HDR_IPFIX.unpack_from(data)
    if length < 16 or length > len(data):
        raise DecodeError("bad_length", f"header says {length}, datagram has {len(data)}")
    hdr = _Hdr(10, export_time * 1000, None, domain, exporter, recv_ms)
    _walk_sets(memoryview(data), 16, length, hdr, st)


def _walk_sets(buf: memoryview, off: int, end: int, hdr: _Hdr, st: DecodeState) -> None:
    try:
        dom = st.cache.domain(hdr.exporter, hdr.version, hdr.domain_id, hdr.recv_ms)
    except BudgetExceeded:
        raise DecodeError("domain_budget", "no room for another domain") from None
    tmpl_ids = (0, 1) if hdr.version == 9 else (2, 3)
    while off + 4 <= end:
        set_id, set_len = _SET.unpack_from(buf, off)
        if set_len < 4 or off + set_len > end:
            raise DecodeError("bad_set_length", f"set {set_id} length {set_len}")
        body = buf[off + 4 : off + set_len]
        off += set_len
        if set_id in tmpl_ids:
            options = set_id == tmpl_ids[1]
            if hdr.version == 9:
                learned = _v9_templates(body, options, dom, hdr, st)
            else:
                learned = _ipfix_templates(body, options, dom, hdr, st)
            if learned and dom.pending:
                _replay(dom, learned, st)
        elif set_id >= 256:
            t = dom.templates.get(set_id)
            if t is None:
                _buffer(dom, set_id, bytes(body), hdr, st)
            else:
                _data_set(t, body, dom, hdr, st)
        else:
            st.counters.drop(hdr.exporter, "unknown_set_id")
    if end - off not in (0,) and hdr.version == 10:
        raise DecodeError("trailing_bytes", f"{end - off} bytes after the last set")


def _store_template(tid: int, fields: tuple, options: bool, scope_count: int,
                    dom: DomainState, hdr: _Hdr, st: DecodeState) -> bool:
    """Learn a template unless unchanged, over a limit, over budget or rate-limited.

    Every check runs before the (costly: a NumPy dtype) Template is built, so a flood of
    refused templates costs little CPU as well as no memory.
    """
    old = dom.templates.get(tid)
    if old is not None and (old.fields, old.is_options, old.scope_count) == (
            fields, options, scope_count):
        return False
    if old is None and len(dom.templates) >= st.cache.max_templates:
        st.counters.drop(hdr.exporter, "template_limit")
        return False
    if not st.cache.allow_template_change(hdr.exporter, hdr.recv_ms):
        st.counters.drop(hdr.exporter, "template_churn")
        return False
    cost = TEMPLATE_BASE_COST + TEMPLATE_FIELD_COST * len(fields)
    if not st.cache.charge(dom, cost, hdr.recv_ms):
        st.counters.drop(hdr.exporter, "template_budget")
        return False
    t = Template(tid, fields, options, scope_count)
    if t.record_len == 0 or t.min_record_len == 0:
        st.cache.release(dom, cost)
        raise DecodeError("empty_template", f"template {tid}")
    if old is not None:
        st.cache.release(dom, template_cost(old))
    dom.templates[tid] = t
    st.counters.get(hdr.exporter).templates += 1
    return True


def _v9_templates(body: memoryview, options: bool, dom: DomainState, hdr: _Hdr,
                  st: DecodeState) -> set[int]:
    learned: set[int] = set()
    off, n = 0, len(body)
    while off + 4 <= n:
        if options:
            if off + 6 > n:
                break
            tid, scope_len, opt_len = struct.unpack_from(">HHH", body, off)
            if tid == 0:
                break  # padding
            off += 6
            nf_scope, nf = scope_len // 4, scope_len // 4 + opt_len // 4
            scope_count = nf_scope
        else:
            tid, nf = _SET.unpack_from(body, off)
            off += 4
            scope_count = 0
        if tid < 256:
            raise DecodeError("bad_template_id", f"template id {tid}")
        if nf == 0 or off + 4 * nf > n:
            raise DecodeError("truncated_template", f"template {tid}")
        if nf > MAX_FIELDS:
            raise DecodeError("too_many_fields", f"template {tid}: {nf}")
        raw = struct.unpack_from(f">{2 * nf}H", body, off)
        off += 4 * nf
        fields = tuple((raw[2 * i], raw[2 * i + 1], 0) for i in range(nf))
        if options and scope_count:
            # v9 scope types (system, interface, ...) are a separate namespace
            fields = tuple((0x10000 + ie, ln, 0) for ie, ln, _ in fields[:scope_count]) + \
                fields[scope_count:]
        if any(ln == VARLEN for _, ln, _ in fields):
            raise DecodeError("bad_field_length", "variable length in NetFlow v9")
        if _store_template(tid, fields, options, scope_count, dom, hdr, st):
            learned.add(tid)
    return learned


def _ipfix_templates(body: memoryview, options: bool, dom: DomainState, hdr: _Hdr,
                     st: DecodeState) -> set[int]:
    learned: set[int] = set()
    off, n = 0, len(body)
    while off + 4 <= n:
        tid, nf = _SET.unpack_from(body, off)
        off += 4
        if nf == 0:  # withdrawal: one template, or all of this kind (id = set id)
            if tid in (2, 3):
                for k in [k for k, t in dom.templates.items() if t.is_options == (tid == 3)]:
                    st.cache.release(dom, template_cost(dom.templates.pop(k)))
            elif tid >= 256:
                gone = dom.templates.pop(tid, None)
                if gone is not None:
                    st.cache.release(dom, template_cost(gone))
            else:
                raise DecodeError("bad_template_id", f"withdrawal of {tid}")
            continue
        if tid < 256:
            raise DecodeError("bad_template_id", f"template id {tid}")
        if nf > MAX_FIELDS:
            raise DecodeError("too_many_fields", f"template {tid}: {nf}")
        scope_count = 0
        if options:
            if off + 2 > n:
                raise DecodeError("truncated_template", f"template {tid}")
            (scope_count,) = struct.unpack_from(">H", body, off)
            off += 2
            if scope_count > nf:
                raise DecodeError("bad_scope_count", f"template {tid}")
        if off + 4 * nf <= n:  # fast path: no enterprise fields (one unpack, no loop)
            raw = struct.unpack_from(f">{2 * nf}H", body, off)
            ies = raw[0::2]
            if max(ies) < 0x8000:
                off += 4 * nf
                if _store_template(tid, tuple(zip(ies, raw[1::2], [0] * nf, strict=True)),
                                   options, scope_count, dom, hdr, st):
                    learned.add(tid)
                continue
        fields = []
        for _ in range(nf):
            if off + 4 > n:
                raise DecodeError("truncated_template", f"template {tid}")
            ie, ln = _SET.unpack_from(body, off)
            off += 4
            pen = 0
            if ie & 0x8000:
                if off + 4 > n:
                    raise DecodeError("truncated_template", f"template {tid}")
                (pen,) = struct.unpack_from(">I", body, off)
                off += 4
                ie &= 0x7FFF
            fields.append((ie, ln, pen))
        if _store_template(tid, tuple(fields), options, scope_count, dom, hdr, st):
            learned.add(tid)
    return learned


def _buffer(dom: DomainState, set_id: int, body: bytes, hdr: _Hdr, st: DecodeState) -> None:
    if not st.cache.charge(dom, len(body) + BUFFERED_SET_OVERHEAD, hdr.recv_ms):
        st.counters.drop(hdr.exporter, "buffer_budget")
        return
    entry = (set_id, body, hdr)
    dom.pending.append(entry)
    st.staged_buffered.append((dom, entry))
    dom.pending_bytes += len(body)
    st.counters.get(hdr.exporter).buffered_sets += 1
    while dom.pending and (len(dom.pending) > st.cache.max_pending_sets
                           or dom.pending_bytes > st.cache.max_pending_bytes):
        _, old, _ = dom.pending.popleft()
        dom.pending_bytes -= len(old)
        st.cache.release(dom, len(old) + BUFFERED_SET_OVERHEAD)
        st.counters.drop(hdr.exporter, "no_template")


def _replay(dom: DomainState, learned: set[int], st: DecodeState) -> None:
    """Decode buffered sets whose template was just learned (and is still defined: a
    template set may define a template and withdraw it again, issue 15)."""
    keep = []
    for set_id, body, hdr in dom.pending:
        t = dom.templates.get(set_id) if set_id in learned else None
        if t is not None:
            dom.pending_bytes -= len(body)
            st.cache.release(dom, len(body) + BUFFERED_SET_OVERHEAD)
            mark = len(st.staged)
            try:
                _data_set(t, memoryview(body), dom, hdr, st)
            except DecodeError as e:
                st.counters.drop(hdr.exporter, e.reason)
            # the set belongs to an earlier datagram that decoded: its records stand
            # whatever happens to the rest of this one
            st.commit_since(mark)
        else:
            keep.append((set_id, body, hdr))
    dom.pending.clear()
    dom.pending.extend(keep)


def _records(t: Template, body: memoryview) -> tuple[np.ndarray, list[bytes] | None]:
    """All records of a data set: one frombuffer for fixed templates."""
    if t.record_len is not None:
        count = len(body) // t.record_len
        return np.frombuffer(body, t.dtype, count=count), None
    return _varlen_records(t, body)


def _varlen_records(t: Template, body: memoryview) -> tuple[np.ndarray, list[bytes] | None]:
    fixed = bytearray()
    sections: list[bytes] = []
    sect_idx = t.sections.get("dl_frame", t.sections.get("ip_section"))
    off, n = 0, len(body)
    minlen = t.min_record_len
    while n - off >= minlen:
        start_fixed = len(fixed)
        sect = b""
        for i, (_, ln, _) in enumerate(t.fields):
            if ln == VARLEN:
                if off + 1 > n:
                    break
                ln = body[off]
                off += 1
                if ln == 255:
                    if off + 2 > n:
                        break
                    ln = int.from_bytes(body[off : off + 2], "big")
                    off += 2
                if off + ln > n:
                    break
                if i == sect_idx:
                    sect = bytes(body[off : off + ln])
                off += ln
            else:
                if off + ln > n:
                    break
                fixed += body[off : off + ln]
                off += ln
        else:
            sections.append(sect)
            continue
        del fixed[start_fixed:]
        raise DecodeError("truncated_record", f"template {t.tid}")
    recs = np.frombuffer(bytes(fixed), t.dtype, count=len(sections)) if sections else \
        np.empty(0, t.dtype)
    return recs, sections if sect_idx is not None else None


def _data_set(t: Template, body: memoryview, dom: DomainState, hdr: _Hdr,
              st: DecodeState) -> None:
    recs, sections = _records(t, body)
    if len(recs) == 0:
        return
    dom.has_data = True
    dom.last_data_ms = hdr.recv_ms
    if t.is_options:
        _options_records(t, recs, dom, hdr, st)
        return
    kind = t.sampling_from
    if kind == "records":
        sampling = None
    elif kind == "sampler":
        sampling = dict(dom.sampling) if dom.sampling else 1
    else:
        sampling = _domain_rate(dom)
    st.add(t, Chunk(recs, hdr.export_ms, hdr.uptime_ms, dom.sys_init_ms, hdr.exporter,
                    "netflow9" if hdr.version == 9 else "ipfix", sampling, sections))


def _domain_rate(dom: DomainState) -> int:
    if not dom.sampling:
        return 1
    if None in dom.sampling:
        return dom.sampling[None]
    vals = set(dom.sampling.values())
    return vals.pop() if len(vals) == 1 else 1


def _options_records(t: Template, recs: np.ndarray, dom: DomainState, hdr: _Hdr,
                     st: DecodeState) -> None:
    """Options data: sampling rates (per sampler / selector id) and systemInitTime."""
    st.counters.get(hdr.exporter).options_records += len(recs)

    def values(role: str) -> list[int] | None:
        name = t.roles.get(role)
        if name is None:
            return None
        a = recs[name]
        if a.dtype.kind == "V":
            from .columns import uint_from_bytes

            a = uint_from_bytes(a, t.widths[role])
        return [int(x) for x in a]

    rate = values("sampling_interval") or values("sampler_random_interval")
    if rate is None and "spi" in t.roles and "sps" in t.roles:
        spi, sps = values("spi"), values("sps")
        rate = [(i + s) // i if i else 1 for i, s in zip(spi, sps, strict=True)]
    ids = values("sampler_id") or values("selector_id")
    if rate is not None:
        for i, r in enumerate(rate):
            key = ids[i] if ids is not None else None
            if len(dom.sampling) < 1024 or key in dom.sampling:
                dom.sampling[key] = max(int(r), 1)
    init = values("sys_init_ms")
    if init:
        dom.sys_init_ms = init[-1]
