"""Templates (NetFlow v9 / IPFIX) and their cache, keyed by exporter and domain.

A template becomes a NumPy structured dtype once, when it arrives; every data set that
uses it is then decoded with one ``np.frombuffer`` call. Roles name the fields the flow
schema needs, so the column builder never looks at field ids again.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

VARLEN = 65535
TRUNKLINE_PEN = 32473  # RFC 5612 documentation PEN, used for trunkline's own fields

# (information element id) -> role; IANA IPFIX ids, which NetFlow v9 shares below 128.
ROLES: dict[int, str] = {
    1: "bytes", 2: "packets", 4: "proto", 6: "tcp_flags", 7: "src_port", 8: "src4",
    10: "in_if", 11: "dst_port", 12: "dst4", 14: "out_if", 16: "src_as", 17: "dst_as",
    21: "last_up", 22: "first_up", 23: "post_bytes", 24: "post_packets", 27: "src6",
    28: "dst6", 34: "sampling_interval", 48: "sampler_id", 50: "sampler_random_interval",
    60: "ip_version", 85: "bytes_total", 86: "packets_total", 150: "start_s",
    151: "end_s", 152: "start_ms", 153: "end_ms", 154: "start_us", 155: "end_us",
    156: "start_ns", 157: "end_ns", 158: "start_delta_us", 159: "end_delta_us",
    160: "sys_init_ms", 252: "in_phys", 253: "out_phys", 302: "selector_id",
    305: "spi", 306: "sps", 323: "obs_ms", 312: "frame_size", 313: "ip_section", 315: "dl_frame",
}
ENTERPRISE_ROLES: dict[tuple[int, int], str] = {
    (TRUNKLINE_PEN, 1): "rtt_us",
    (TRUNKLINE_PEN, 2): "retransmits",
    (TRUNKLINE_PEN, 3): "delivery_rate_bps",
}
ADDRESS_WIDTH = {"src4": 4, "dst4": 4, "src6": 16, "dst6": 16}
SECTION_ROLES = {"dl_frame", "ip_section"}


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

    @property
    def min_record_len(self) -> int:
        """Shortest possible record (variable fields at their 1-byte minimum)."""
        return sum(1 if ln == VARLEN else ln for _, ln, _ in self.fields)

    def same_as(self, other: Template) -> bool:
        return (self.fields, self.is_options, self.scope_count) == (
            other.fields, other.is_options, other.scope_count)


@dataclass
class DomainState:
    """Everything learned from one (exporter, version, observation domain / source id)."""

    templates: dict[int, Template] = field(default_factory=dict)
    sampling: dict[int | None, int] = field(default_factory=dict)  # sampler id -> rate
    sys_init_ms: int | None = None
    pending: deque = field(default_factory=deque)  # data sets waiting for their template
    pending_bytes: int = 0


class TemplateCache:
    """Domain states keyed by (exporter, version, domain); bounded in domains and templates.

    An exporter's packets only ever reach keys that start with that exporter's address,
    so one exporter's garbage cannot touch another exporter's templates.
    """

    def __init__(self, max_domains: int = 4096, max_templates_per_domain: int = 1024,
                 max_pending_sets: int = 64, max_pending_bytes: int = 1 << 20):
        self.max_domains = max_domains
        self.max_templates = max_templates_per_domain
        self.max_pending_sets = max_pending_sets
        self.max_pending_bytes = max_pending_bytes
        self.domains: OrderedDict[tuple[str, int, int], DomainState] = OrderedDict()

    def domain(self, exporter: str, version: int, domain_id: int) -> DomainState:
        key = (exporter, version, domain_id)
        st = self.domains.get(key)
        if st is None:
            while len(self.domains) >= self.max_domains:
                self.domains.popitem(last=False)  # least recently used domain
            st = self.domains[key] = DomainState()
        else:
            self.domains.move_to_end(key)
        return st

    def templates_of(self, exporter: str) -> dict[tuple[int, int, int], tuple]:
        """A snapshot of an exporter's templates (for tests and ``flows status``)."""
        return {
            (v, d, tid): t.fields
            for (e, v, d), st in self.domains.items() if e == exporter
            for tid, t in st.templates.items()
        }

    def template_count(self) -> int:
        return sum(len(st.templates) for st in self.domains.values())
