"""Byte budgets of the template cache (issue 15): templates, domains and buffered sets
cost their memory, per exporter and globally; floods evict only the flooder's entries;
a domain that decodes data is never evicted for one that sent nothing; churn is
rate-limited. Hand-built datagrams with known answers, fed to the real decoder."""

from __future__ import annotations

import struct
import tracemalloc

from trunkline.flows.decode import FlowDecoder, TemplateCache
from trunkline.testing.flowcraft import (
    FLOW_FIELDS,
    flow_record,
    ipfix_msg,
    ipfix_set,
    template_record,
    template_set,
)

LEGIT = "192.0.2.1"
NOW = 1_700_000_000_000


def _legit_start(d: FlowDecoder, now: int = NOW) -> None:
    assert d.feed(ipfix_msg(template_set(template_record(256, FLOW_FIELDS))), LEGIT, now)
    assert _legit_data(d, now) == 1


def _legit_data(d: FlowDecoder, now: int = NOW) -> int:
    before = d.counters.get(LEGIT).records
    d.feed(ipfix_msg(ipfix_set(256, flow_record(1, 2, 3, 1_700_000_000))), LEGIT, now)
    return d.counters.get(LEGIT).records - before


def _wide_template(tid: int, nfields: int = 512) -> bytes:
    return template_record(tid, [(1000 + i % 200, 4) for i in range(nfields)])


def test_wide_template_flood_from_150_addresses_stays_within_the_budget():
    budget, quota = 1 << 20, 128 << 10
    d = FlowDecoder(TemplateCache(budget_bytes=budget, exporter_quota_bytes=quota))
    _legit_start(d)
    msgs = [ipfix_msg(template_set(*[_wide_template(300 + i + k) for k in range(4)]))
            for i in range(0, 8, 4)]  # 4 wide templates (~8 KiB) per datagram, 8 per address
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    wire = 0
    for a in range(150):
        for msg in msgs:
            wire += len(msg)
            d.feed(msg, f"198.51.100.{a}", NOW)
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert wire > 2 << 20  # unbounded, these would hold ~250 MiB of templates
    assert d.cache.used <= budget
    assert all(v <= quota for v in d.cache.exporter_bytes().values())
    assert grown < budget * 1.5, f"{grown} bytes live for a {budget} byte budget"
    assert d.counters.totals()["drops"]["template_budget"] > 0
    assert _legit_data(d) == 1  # the exporter that decodes data kept its template


def test_header_only_domain_flood_never_evicts_another_exporter():
    d = FlowDecoder(TemplateCache(budget_bytes=2 << 20, exporter_quota_bytes=1 << 20))
    _legit_start(d)
    for i in range(4096):  # ~80 KiB on the wire, distinct observation domains
        d.feed(struct.pack(">HHIII", 10, 16, 1_700_000_000, 0, 1000 + i), "203.0.113.9", NOW)
    assert (10, 1, 256) in d.cache.templates_of(LEGIT)
    assert d.cache.exporter_bytes()["203.0.113.9"] <= 1 << 20
    assert d.counters.get("203.0.113.9").evicted_domains > 0  # it evicted its own
    assert _legit_data(d) == 1


def test_spoofed_domains_of_the_same_address_never_evict_a_domain_with_data():
    d = FlowDecoder(TemplateCache(exporter_quota_bytes=64 << 10))
    _legit_start(d)
    for i in range(2000):  # the attacker spoofs the legitimate exporter's own address
        d.feed(struct.pack(">HHIII", 10, 16, 1_700_000_000, 0, 5000 + i), LEGIT, NOW + 1000)
    assert _legit_data(d, NOW + 2000) == 1
    c = d.counters.as_dict()["exporters"][LEGIT]
    assert c["evicted_domains"] > 0  # stale spoofed domains made room for each other
    # once only protected domains remain, new empty ones are refused, not made room for
    small = FlowDecoder(TemplateCache(exporter_quota_bytes=6000))
    _legit_start(small)
    for i in range(10):
        small.feed(struct.pack(">HHIII", 10, 16, 1_700_000_000, 0, 9000 + i), LEGIT, NOW)
    assert _legit_data(small) == 1


def test_domain_protection_expires_when_data_stops():
    cache = TemplateCache(exporter_quota_bytes=6000, protect_ms=60_000)
    d = FlowDecoder(cache)
    _legit_start(d)
    later = NOW + 61_000  # no data for longer than the protection window
    d.feed(struct.pack(">HHIII", 10, 16, 1_700_000_000, 0, 77), LEGIT, later)
    d.feed(struct.pack(">HHIII", 10, 16, 1_700_000_000, 0, 78), LEGIT, later)
    assert (10, 1, 256) not in d.cache.templates_of(LEGIT)


def test_template_redefinition_churn_is_rate_limited_per_exporter():
    cache = TemplateCache(template_changes_per_s=10, template_change_burst=100)
    d = FlowDecoder(cache)
    _legit_start(d)
    a = template_record(300, [(1, 4), (8, 4)])
    b = template_record(300, [(8, 4), (1, 4)])
    for i in range(1000):  # the same id, flipping layouts, all at one instant
        d.feed(ipfix_msg(template_set(a if i % 2 else b)), "203.0.113.7", NOW)
    c = d.counters.as_dict()["exporters"]["203.0.113.7"]
    # 100 changes pass (the burst); of the 900 others, half repeat the layout in place
    assert c["templates"] == 100 and c["drops"]["template_churn"] == 450
    d.feed(ipfix_msg(template_set(b)), "203.0.113.7", NOW + 1000)  # refilled: 10/s
    assert d.counters.get("203.0.113.7").templates == 101
    assert _legit_data(d) == 1  # the other exporter's bucket is its own


def test_buffered_sets_are_charged_and_released():
    d = FlowDecoder(TemplateCache())
    before = d.cache.used
    data = ipfix_set(500, flow_record(1, 2, 3, 1_700_000_000))
    d.feed(ipfix_msg(data), LEGIT, NOW)
    held = d.cache.used - before
    assert held > len(data)
    d.feed(ipfix_msg(template_set(template_record(500, FLOW_FIELDS))), LEGIT, NOW)
    assert d.flush().num_rows == 1
    dom = d.cache.domains[(LEGIT, 10, 1)]
    assert not dom.pending and dom.cost == d.cache.used  # only domain + template remain
