"""Per-exporter counters: packets, records, drops by reason, templates.

Plain integers in nested dicts, so the decoder stays sans-I/O and the collector can
publish them (``flows status``, Prometheus) without locking the hot path.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ...errors import DataError


@dataclass
class ExporterCounters:
    packets: int = 0
    records: int = 0
    templates: int = 0
    options_records: int = 0
    buffered_sets: int = 0
    discarded_records: int = 0  # decoded, then discarded with their failing datagram
    evicted_domains: int = 0  # template domains evicted to stay within the byte budget
    drops: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict:
        return {
            "packets": self.packets,
            "records": self.records,
            "templates": self.templates,
            "options_records": self.options_records,
            "buffered_sets": self.buffered_sets,
            "discarded_records": self.discarded_records,
            "evicted_domains": self.evicted_domains,
            "drops": dict(self.drops),
        }


class Counters:
    """Counters keyed by exporter address; bounded by ``max_exporters`` (excess pooled)."""

    def __init__(self, max_exporters: int = 10_000):
        self.max_exporters = max_exporters
        self.by_exporter: dict[str, ExporterCounters] = {}

    def get(self, exporter: str) -> ExporterCounters:
        c = self.by_exporter.get(exporter)
        if c is None:
            if len(self.by_exporter) >= self.max_exporters:
                exporter = "_other"
                c = self.by_exporter.get(exporter)
                if c is not None:
                    return c
            c = self.by_exporter[exporter] = ExporterCounters()
        return c

    def drop(self, exporter: str, reason: str, n: int = 1) -> None:
        self.get(exporter).drops[reason] += n

    def totals(self) -> dict:
        t = ExporterCounters()
        for c in self.by_exporter.values():
            t.packets += c.packets
            t.records += c.records
            t.templates += c.templates
            t.options_records += c.options_records
            t.buffered_sets += c.buffered_sets
            t.discarded_records += c.discarded_records
            t.evicted_domains += c.evicted_domains
            for k, v in c.drops.items():
                t.drops[k] += v
        return t.as_dict()

    def as_dict(self) -> dict:
        return {
            "totals": self.totals(),
            "exporters": {k: v.as_dict() for k, v in sorted(self.by_exporter.items())},
        }


class DecodeError(DataError):
    """A malformed packet; ``reason`` is the short counter label."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
