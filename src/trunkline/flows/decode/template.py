"""Templates (NetFlow v9 / IPFIX) and their cache, keyed by exporter and domain.

A template becomes a NumPy structured dtype once, when it arrives; every data set that
uses it is then decoded with one ``np.frombuffer`` call. Roles name the fields the flow
schema needs, so the column builder never looks at field ids again.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from ...errors import TrunklineError
from .. import ipfix as iana
from ..ipfix import TRUNKLINE_PEN

VARLEN = 65535
# (information element id) -> role; the ids are defined once, in ``flows.ipfix``.
ROLES: dict[int, str] = {
    iana.OCTET_DELTA_COUNT: "bytes", iana.PACKET_DELTA_COUNT: "packets",
    iana.PROTOCOL_IDENTIFIER: "proto", iana.TCP_CONTROL_BITS: "tcp_flags",
    iana.SOURCE_TRANSPORT_PORT: "src_port", iana.SOURCE_IPV4_ADDRESS: "src4",
    iana.INGRESS_INTERFACE: "in_if", iana.DESTINATION_TRANSPORT_PORT: "dst_port",
    iana.DESTINATION_IPV4_ADDRESS: "dst4", iana.EGRESS_INTERFACE: "out_if",
    iana.BGP_SOURCE_AS_NUMBER: "src_as", iana.BGP_DESTINATION_AS_NUMBER: "dst_as",
    iana.FLOW_END_SYS_UP_TIME: "last_up", iana.FLOW_START_SYS_UP_TIME: "first_up",
    iana.POST_OCTET_DELTA_COUNT: "post_bytes", iana.POST_PACKET_DELTA_COUNT: "post_packets",
    iana.SOURCE_IPV6_ADDRESS: "src6", iana.DESTINATION_IPV6_ADDRESS: "dst6",
    iana.SAMPLING_INTERVAL: "sampling_interval", iana.SAMPLER_ID: "sampler_id",
    iana.SAMPLER_RANDOM_INTERVAL: "sampler_random_interval", iana.IP_VERSION: "ip_version",
    iana.OCTET_TOTAL_COUNT: "bytes_total", iana.PACKET_TOTAL_COUNT: "packets_total",
    iana.FLOW_START_SECONDS: "start_s", iana.FLOW_END_SECONDS: "end_s",
    iana.FLOW_START_MILLISECONDS: "start_ms", iana.FLOW_END_MILLISECONDS: "end_ms",
    iana.FLOW_START_MICROSECONDS: "start_us", iana.FLOW_END_MICROSECONDS: "end_us",
    iana.FLOW_START_NANOSECONDS: "start_ns", iana.FLOW_END_NANOSECONDS: "end_ns",
    iana.FLOW_START_DELTA_MICROSECONDS: "start_delta_us",
    iana.FLOW_END_DELTA_MICROSECONDS: "end_delta_us",
    iana.SYSTEM_INIT_TIME_MILLISECONDS: "sys_init_ms",
    iana.INGRESS_PHYSICAL_INTERFACE: "in_phys", iana.EGRESS_PHYSICAL_INTERFACE: "out_phys",
    iana.SELECTOR_ID: "selector_id", iana.SAMPLING_PACKET_INTERVAL: "spi",
    iana.SAMPLING_PACKET_SPACE: "sps", iana.OBSERVATION_TIME_MILLISECONDS: "obs_ms",
    iana.DATA_LINK_FRAME_SIZE: "frame_size", iana.IP_HEADER_PACKET_SECTION: "ip_section",
    iana.DATA_LINK_FRAME_SECTION: "dl_frame",
}
ENTERPRISE_ROLES: dict[tuple[int, int], str] = {
    (TRUNKLINE_PEN, iana.TRUNKLINE_RTT_US): "rtt_us",
    (TRUNKLINE_PEN, iana.TRUNKLINE_RETRANSMITS): "retransmits",
    (TRUNKLINE_PEN, iana.TRUNKLINE_DELIVERY_RATE_BPS): "delivery_rate_bps",
}
ADDRESS_WIDTH = {"src4": 4, "dst4": 4, "src6": 16, "dst6": 16}
SECTION_ROLES = {"dl_frame", "ip_section"}
SAMPLING_VALUE_ROLES = ("sampling_interval", "sampler_random_interval")
"""Roles whose value in a record is that record's sampling interval."""


@dataclass(eq=False)
class Template:
    """A decoded (options) template: field list, fixed-part dtype and role map."""

    tid: int
    fields: tuple[tuple[int, int, int], ...]  # (element id, length, enterprise number)
    is_options: bool = False
    scope_count: int = 0
    dtype: np.dtype = field(init=False)
    record_len: int | None = field(init=False)  # None when any field is variable-length
    roles: dict[str, str] = field(init=False)  # role -> dtype field name
    widths: dict[str, int] = field(init=False)
    sections: dict[str, int] = field(init=False)  # role -> index in fields (byte sections)
    # where its data records' sampling rate comes from, decided once (not per data set):
    # "records" (each record carries it), "sampler" (each names a sampler the options
    # data describe), or "domain" (the exporter's one announced rate)
    sampling_from: str = field(init=False)

    def __post_init__(self) -> None:
        names, formats, roles, widths, sections = [], [], {}, {}, {}
        varlen = False
        for i, (ie, length, pen) in enumerate(self.fields):
            role = ROLES.get(ie) if pen == 0 else ENTERPRISE_ROLES.get((pen, ie))
            if length == VARLEN:
                varlen = True
                if role in SECTION_ROLES:
                    sections[role] = i
                continue
            if role in SECTION_ROLES:
                sections[role] = i
            name = f"f{i}"
            names.append(name)
            fmt = f">u{length}" if length in (1, 2, 4, 8) else f"V{length}" if length else "V0"
            formats.append(fmt)
            if role is None or role in roles:
                continue
            if role in ADDRESS_WIDTH and length != ADDRESS_WIDTH[role]:
                continue  # an address of the wrong width is not an address
            if role not in ADDRESS_WIDTH and role not in SECTION_ROLES and not 1 <= length <= 8:
                continue
            roles[role] = name
            widths[role] = length
        self.dtype = np.dtype({"names": names, "formats": formats})
        self.record_len = None if varlen else self.dtype.itemsize
        self.roles, self.widths, self.sections = roles, widths, sections
        self.sampling_from = (
            "records" if "spi" in roles or any(r in roles for r in SAMPLING_VALUE_ROLES)
            else "sampler" if "sampler_id" in roles or "selector_id" in roles else "domain")

    @property
    def min_record_len(self) -> int:
        """Shortest possible record (variable fields at their 1-byte minimum)."""
        return sum(1 if ln == VARLEN else ln for _, ln, _ in self.fields)

    def same_as(self, other: Template) -> bool:
        return (self.fields, self.is_options, self.scope_count) == (
            other.fields, other.is_options, other.scope_count)


# Memory cost estimates (bytes), measured with tracemalloc on CPython 3.11 / NumPy 2:
# a Template is ~700 B plus ~330 B per field (its NumPy dtype, names, role maps); a
# DomainState ~1 KiB. Rounded up, so budgets err on the safe side (a 512-field template
# is charged 215 KiB: what issue 15 measured in RSS).
TEMPLATE_BASE_COST = 768
TEMPLATE_FIELD_COST = 420
DOMAIN_COST = 1280
BUFFERED_SET_OVERHEAD = 160


def template_cost(t: Template) -> int:
    return TEMPLATE_BASE_COST + TEMPLATE_FIELD_COST * len(t.fields)


@dataclass(eq=False)
class DomainState:
    """Everything learned from one (exporter, version, observation domain / source id)."""

    templates: dict[int, Template] = field(default_factory=dict)
    sampling: dict[int | None, int] = field(default_factory=dict)  # sampler id -> rate
    sys_init_ms: int | None = None
    pending: deque = field(default_factory=deque)  # data sets waiting for their template
    pending_bytes: int = 0
    exporter: str = ""
    key: tuple[int, int] = (0, 0)  # (version, domain id)
    cost: int = 0  # bytes charged to the exporter's budget for this domain
    has_data: bool = False  # decoded data at least once
    last_data_ms: int = 0  # receive time of the last decoded data set


@dataclass(eq=False)
class ExporterState:
    """One exporter address: its domains (LRU order), the bytes they cost, and the token
    bucket that rate-limits its template (re)definitions."""

    domains: OrderedDict[tuple[int, int], DomainState] = field(default_factory=OrderedDict)
    used: int = 0
    tokens: float = 0.0
    tokens_ms: int = 0


class BudgetExceeded(TrunklineError):
    """No room for a new domain of this exporter (counted by the caller, never escapes)."""


class TemplateCache:
    """Domain states keyed by (exporter, version, domain), bounded by memory in bytes.

    Templates, domains and buffered data sets are charged to their exporter's budget by
    their memory cost. Limits: a per-exporter quota and a global budget. Room is made by
    evicting whole domains, least recently active first, and:

    * an exporter over its quota evicts only its own domains;
    * when the global budget is full, an exporter holding more than its fair share
      (budget / exporters) evicts only its own domains; one holding less may evict the
      stale domains of the heaviest exporter;
    * a domain that decoded data within ``protect_ms`` is never evicted to make room
      (the new entry is refused and counted instead).

    An exporter's packets only ever reach keys that start with that exporter's address,
    so one exporter's garbage cannot touch another exporter's templates.
    """

    def __init__(self, budget_bytes: int = 256 << 20, exporter_quota_bytes: int = 16 << 20,
                 max_templates_per_domain: int = 1024, max_pending_sets: int = 64,
                 max_pending_bytes: int = 1 << 20, protect_ms: int = 15 * 60_000,
                 template_changes_per_s: float = 50.0, template_change_burst: int = 2048):
        self.budget_bytes = budget_bytes
        self.exporter_quota_bytes = exporter_quota_bytes
        self.max_templates = max_templates_per_domain
        self.max_pending_sets = max_pending_sets
        self.max_pending_bytes = max_pending_bytes
        self.protect_ms = protect_ms
        self.change_rate = template_changes_per_s
        self.change_burst = template_change_burst
        self.exporters: dict[str, ExporterState] = {}
        self.used = 0
        self.evicted_domains = 0
        self.on_evict = None  # callback(domain) for counting what an eviction threw away

    # -- lookup ------------------------------------------------------------------------
    def domain(self, exporter: str, version: int, domain_id: int, now_ms: int = 0
               ) -> DomainState:
        """The domain's state, created (and charged) on first sight; raises
        ``BudgetExceeded`` when the exporter has no room for another domain."""
        ex = self.exporters.get(exporter)
        key = (version, domain_id)
        if ex is not None:
            st = ex.domains.get(key)
            if st is not None:
                ex.domains.move_to_end(key)
                return st
        else:
            ex = self.exporters[exporter] = ExporterState(tokens=self.change_burst,
                                                           tokens_ms=now_ms)
        st = DomainState(exporter=exporter, key=key)
        if not self._make_room(exporter, ex, DOMAIN_COST, None, now_ms):
            if not ex.domains:
                del self.exporters[exporter]
            raise BudgetExceeded(exporter)
        ex.domains[key] = st
        self._add(ex, st, DOMAIN_COST)
        return st

    # -- accounting --------------------------------------------------------------------
    def charge(self, dom: DomainState, nbytes: int, now_ms: int = 0) -> bool:
        """Account ``nbytes`` more to ``dom``; False (nothing charged) if no room."""
        ex = self.exporters.get(dom.exporter)
        if ex is None or ex.domains.get(dom.key) is not dom:
            return False  # the domain was evicted while its datagram was decoded
        if not self._make_room(dom.exporter, ex, nbytes, dom, now_ms):
            return False
        self._add(ex, dom, nbytes)
        return True

    def release(self, dom: DomainState, nbytes: int) -> None:
        ex = self.exporters.get(dom.exporter)
        if ex is None or ex.domains.get(dom.key) is not dom:
            return
        self._add(ex, dom, -nbytes)

    def allow_template_change(self, exporter: str, now_ms: int) -> bool:
        """Token bucket per exporter on template definitions that change the cache."""
        ex = self.exporters.get(exporter)
        if ex is None:
            return True
        if now_ms > ex.tokens_ms:
            ex.tokens = min(self.change_burst,
                            ex.tokens + (now_ms - ex.tokens_ms) / 1000 * self.change_rate)
            ex.tokens_ms = now_ms
        if ex.tokens < 1:
            return False
        ex.tokens -= 1
        return True

    def _add(self, ex: ExporterState, dom: DomainState, n: int) -> None:
        dom.cost += n
        ex.used += n
        self.used += n

    def _recent(self, dom: DomainState, now_ms: int) -> bool:
        return dom.has_data and now_ms - dom.last_data_ms <= self.protect_ms

    def _victim(self, ex: ExporterState, keep: DomainState | None, now_ms: int):
        for d in ex.domains.values():  # least recently active first
            if d is not keep and not self._recent(d, now_ms):
                return d
        return None

    def _evict(self, dom: DomainState) -> None:
        ex = self.exporters[dom.exporter]
        del ex.domains[dom.key]
        ex.used -= dom.cost
        self.used -= dom.cost
        self.evicted_domains += 1
        if self.on_evict is not None:
            self.on_evict(dom)
        if not ex.domains:
            del self.exporters[dom.exporter]

    def _make_room(self, exporter: str, ex: ExporterState, need: int,
                   keep: DomainState | None, now_ms: int) -> bool:
        if need > self.exporter_quota_bytes:
            return False
        while ex.used + need > self.exporter_quota_bytes:
            v = self._victim(ex, keep, now_ms)
            if v is None:
                return False
            self._evict(v)
        while self.used + need > self.budget_bytes:
            fair = self.budget_bytes // max(len(self.exporters), 1)
            if ex.used >= fair:
                v = self._victim(ex, keep, now_ms)
            else:
                heavy = max(self.exporters.values(), key=lambda e: e.used)
                v = self._victim(heavy, keep, now_ms)
            if v is None:
                return False
            self._evict(v)
        return True

    # -- views -------------------------------------------------------------------------
    @property
    def domains(self) -> dict[tuple[str, int, int], DomainState]:
        """Every domain by (exporter, version, domain id) (a snapshot)."""
        return {(e, v, d): st for e, ex in self.exporters.items()
                for (v, d), st in ex.domains.items()}

    def templates_of(self, exporter: str) -> dict[tuple[int, int, int], tuple]:
        """A snapshot of an exporter's templates (for tests and ``flows status``)."""
        ex = self.exporters.get(exporter)
        if ex is None:
            return {}
        return {(v, d, tid): t.fields for (v, d), st in ex.domains.items()
                for tid, t in st.templates.items()}

    def template_count(self) -> int:
        return sum(len(st.templates) for ex in self.exporters.values()
                   for st in ex.domains.values())

    def exporter_bytes(self) -> dict[str, int]:
        return {e: ex.used for e, ex in self.exporters.items()}
