"""A demo quarter of synthetic flows at a storage provider's edge. SIMULATED data.

Peers are real addresses of real ASNs, drawn from the enrichment range table and kept
only where GeoIP places them (neocloud servers in the US AI metros), so the report has
something true to enrich. Traffic: elephant sessions (1-minute records of one 5-tuple at
hundreds of Mb/s to several Gb/s, mostly to neoclouds) and many small flows to CDNs and
ISP eyeballs, scaled so category shares follow a target that drifts month by month.
Our edge is the documentation prefix 198.51.100.0/24. Deterministic for a given seed.
Records carry flow_type 'simulated' (the report labels them) and one of four exporters
named sim-* (``SIM_REGIONS`` maps them to regions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from .enrich import Enricher
from .enrich.asn import AsnRanges
from .stats import Quarter
from .store import FlowStore

EDGE_NET = 0xC6336400  # 198.51.100.0/24, our edge (the taxonomy's [local] table)
PEER_ASNS = {
    "neocloud": [33425, 398090, 26356, 20473, 213291, 401506, 401319, 401182, 400133],
    "hyperscaler": [16509, 14618, 15169, 396982, 8075, 31898],
    "cdn": [13335, 20940, 16625, 54113, 22822],
    "isp_regional": [7922, 20115, 22773, 21928, 2856, 3215],
    "isp_tier1": [7018, 701, 3320, 3356, 1299, 174],
    "hosting": [14061, 63949, 16276, 24940],
}
# target share (%) of bits per category, for months 0, 1, 2 of the quarter (sums to 100)
TARGET = {
    "neocloud": (30.0, 33.0, 36.0),
    "hyperscaler": (20.0, 20.0, 20.0),
    "cdn": (18.0, 17.0, 16.0),
    "isp_regional": (16.0, 14.5, 13.0),
    "isp_tier1": (6.0, 5.5, 5.0),
    "hosting": (8.0, 8.0, 8.0),
    "other": (2.0, 2.0, 2.0),
}
ELEPHANT_MIX = {"neocloud": 0.70, "hyperscaler": 0.20, "hosting": 0.10}
MICE_MIX = {"isp_regional": 0.45, "isp_tier1": 0.10, "cdn": 0.28, "hyperscaler": 0.06, "hosting": 0.05,
            "neocloud": 0.02, "other": 0.04}
SIM_EXPORTERS = ("sim-us-west-1", "sim-us-east-1", "sim-ca-east-1", "sim-eu-central-1")
SIM_EXPORTER_P = (0.35, 0.35, 0.1, 0.2)
SIM_REGIONS = {"sim-us-west-1": "US-West", "sim-us-east-1": "US-East", "sim-ca-east-1": "CA-East",
               "sim-eu-central-1": "EU-Central"}  # the [regions] of docs/flows-report.md's example
OTHER_ASNS = [714, 2906, 32590, 46489]  # Apple, Netflix, Valve, Twitch: no rule -> "other"


@dataclass
class SimResult:
    flows: int
    elephant_sessions: int
    unique_peers: int
    seconds: float


def _pools(enricher: Enricher, rng: np.random.Generator, blocks_per_asn: int = 48):
    """Per category: list of (/24 base uint32 array, metro names) located by GeoIP."""
    asn_db = enricher.asn
    if not isinstance(asn_db, AsnRanges):
        raise UsageError("the simulator needs the ASN range tables (ip-asn CSVs)")
    ai = {m.name for m in enricher.metros.metros if m.ai_us}
    pools: dict[str, list[np.ndarray]] = {}
    cats = {**PEER_ASNS, "other": OTHER_ASNS}
    for cat, asns in cats.items():
        bases = []
        for a in asns:
            rng_ = np.array(asn_db.ranges_of(a), dtype=np.int64).reshape(-1, 2)
            if not len(rng_):
                continue
            size = rng_[:, 1] - rng_[:, 0] + 1
            pick = rng.choice(len(rng_), size=blocks_per_asn * 4, p=size / size.sum())
            addr = rng_[pick, 0] + (rng.random(len(pick)) * size[pick]).astype(np.int64)
            base = np.unique(addr & ~0xFF)
            ep = enricher.endpoints(_text(base + 1)).to_pydict()
            metro = np.array(ep["metro"], dtype=object)
            where = {}
            for addr_s, m in zip(ep["addr"], metro, strict=True):
                where[addr_s] = m
            metro = np.array([where[s] for s in _text(base + 1).to_pylist()], dtype=object)
            if cat == "neocloud":  # GPU clusters sit in the US AI metros: keep those only
                keep = np.isin(metro, list(ai))
            else:
                keep = metro != "no metro"
                keep |= rng.random(len(base)) < 0.15  # some peers GeoIP cannot place
                if keep.sum() < 4:
                    keep[:] = True
            bases.append(base[keep][:blocks_per_asn])
        found = np.concatenate(bases) if bases else np.zeros(0, np.int64)
        if len(found) == 0:
            raise UsageError(f"simulator: no address of the {cat} ASNs located by the enrichment data")
        pools[cat] = found
    return pools


def _text(v: np.ndarray) -> pa.Array:
    v = np.asarray(v, np.int64)
    parts = [pa.array(((v >> s) & 255).astype(np.int64)).cast(pa.string()) for s in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*parts, ".")


def _month_bounds(q: Quarter) -> list[tuple[float, float]]:
    ms = [datetime(q.year, 3 * q.q - 2 + i, 1, tzinfo=q.start.tzinfo) for i in range(3)] + [q.end]
    return [(ms[i].timestamp(), ms[i + 1].timestamp()) for i in range(3)]


# offsets (points) of the target shares for a "previous quarter" run, so QoQ moves
PREVIOUS_SHIFT = {"neocloud": -6.0, "hyperscaler": 1.0, "cdn": 2.0, "isp_regional": 2.0, "isp_tier1": 1.0}


def simulate(quarter: Quarter, store: FlowStore, enricher: Enricher, flows: int = 1_500_000,
             seed: int = 7, drift: float = 1.0, shift: dict[str, float] | None = None,
             batch: int = 1_000_000, part: int = 0) -> SimResult:
    """Write ``flows`` records for ``quarter`` into ``store``, ``batch`` records (in time
    order) per write, as a collector would. ``drift`` scales the month-to-month change of
    the target shares (0 = flat); ``shift`` adds points to a category's target (e.g.
    ``PREVIOUS_SHIFT`` for the quarter before a demo quarter). ``part`` > 0 draws other
    records from the same peers: k parts of n flows are one quarter of k x n flows, made
    in the memory of n (as k collectors of one edge would write it)."""
    import time

    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, quarter.year, quarter.q])
    pools = _pools(enricher, rng)
    if part:
        rng = np.random.default_rng([seed, quarter.year, quarter.q, 2, part])
    months = _month_bounds(quarter)
    # --- elephants: ~1 % of records, 1-minute records of one 5-tuple --------------------
    n_el_rec = max(int(flows * 0.01), 30)
    mean_len = 30
    n_sess = max(n_el_rec // mean_len, 3)
    sess_len = np.clip(rng.geometric(1 / mean_len, n_sess), 5, 240)
    sess_cat = rng.choice(list(ELEPHANT_MIX), size=n_sess, p=list(ELEPHANT_MIX.values()))
    sess_month = rng.choice(3, size=n_sess, p=[0.28, 0.33, 0.39])
    sess_rate = np.exp(rng.normal(np.log(1.2e9), 0.6, n_sess))  # median 1.2 Gb/s
    sess_peer = np.zeros(n_sess, np.int64)
    for c in ELEPHANT_MIX:
        m = sess_cat == c
        pool = pools[c]
        sess_peer[m] = pool[rng.integers(0, len(pool), m.sum())] + rng.integers(1, 9, m.sum())
    lo = np.array([months[m][0] for m in sess_month])
    hi = np.array([months[m][1] for m in sess_month]) - sess_len * 60
    sess_t0 = np.floor((lo + rng.random(n_sess) * (hi - lo)) / 60) * 60
    rec_sess = np.repeat(np.arange(n_sess), sess_len)
    rec_i = np.arange(len(rec_sess)) - np.repeat(np.cumsum(sess_len) - sess_len, sess_len)
    el = {
        "t": sess_t0[rec_sess] + rec_i * 60.0, "dur": np.full(len(rec_sess), 60.0),
        "peer": sess_peer[rec_sess],
        "local": EDGE_NET + 1 + (rec_sess % 30),
        "lport": np.full(len(rec_sess), 443), "pport": 32768 + (rec_sess * 7919) % 28000,
        "bits": sess_rate[rec_sess] * 60 * rng.uniform(0.8, 1.2, len(rec_sess)),
        "cat": sess_cat[rec_sess], "month": sess_month[rec_sess],
        "out": np.ones(len(rec_sess), bool),
    }
    # --- mice: everything else -----------------------------------------------------------
    n_mice = max(flows - len(rec_sess), 0)
    mcat = rng.choice(list(MICE_MIX), size=n_mice, p=list(MICE_MIX.values()))
    mmonth = rng.choice(3, size=n_mice, p=[0.32, 0.33, 0.35])
    day = rng.random(n_mice)
    hour = (rng.normal(20, 4, n_mice) % 24) / 24  # evening-peaked eyeball traffic
    mlo = np.array([months[m][0] for m in mmonth])
    mhi = np.array([months[m][1] for m in mmonth])
    ndays = np.floor((mhi - mlo) / 86400)
    mt = mlo + np.floor(day * ndays) * 86400 + hour * 86400
    mpeer = np.zeros(n_mice, np.int64)
    for c in MICE_MIX:
        m = mcat == c
        pool = pools[c]
        hosts = rng.integers(1, 255, m.sum()) if c in ("isp_regional", "other") else rng.integers(1, 17, m.sum())
        mpeer[m] = pool[rng.integers(0, len(pool), m.sum())] + hosts
    weight = np.exp(rng.normal(0, 1.0, n_mice))
    # scale mice per (category, month) so category shares follow TARGET
    mbits = np.zeros(n_mice)
    for mi in range(3):
        el_m = {c: el["bits"][(el["month"] == mi) & (el["cat"] == c)].sum() for c in ELEPHANT_MIX}
        target = {c: v[1] + drift * (v[mi] - v[1]) + (shift or {}).get(c, 0.0)
                  for c, v in TARGET.items()}
        total = max(max(el_m[c] / (target[c] / 100) for c in ELEPHANT_MIX), 1e12)
        for c in MICE_MIX:
            m = (mcat == c) & (mmonth == mi)
            want = max(target[c] / 100 * total - el_m.get(c, 0.0), 0.0)
            if m.any():
                mbits[m] = weight[m] / weight[m].sum() * want
    mdur = np.minimum(np.maximum(mbits / 50e6, 1.0), 59.0)
    mouts = rng.random(n_mice) < 0.85  # downloads from us; the rest uploads to us
    mice = {
        "t": mt, "dur": mdur, "peer": mpeer,
        "local": EDGE_NET + 1 + rng.integers(0, 60, n_mice),
        "lport": np.full(n_mice, 443), "pport": rng.integers(32768, 61000, n_mice),
        "bits": mbits, "out": mouts,
    }
    cols = {k: np.concatenate([el[k], mice[k]]) for k in ("t", "dur", "peer", "local", "lport", "pport", "bits", "out")}
    order = np.argsort(cols["t"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    out = cols["out"]
    peer_s, local_s = _text(cols["peer"]), _text(cols["local"])
    nbytes = np.maximum(np.round(cols["bits"] / 8), 64).astype(np.uint64)
    t_ms = (cols["t"] * 1000).astype(np.int64)
    table = pa.table({
        "time_start": pa.array(t_ms, pa.timestamp("ms", tz="UTC")),
        "time_end": pa.array(t_ms + (cols["dur"] * 1000).astype(np.int64), pa.timestamp("ms", tz="UTC")),
        # four exporters (sites), drawn apart from the rest so the flows stay as they were
        "exporter": pa.array(np.array(SIM_EXPORTERS, dtype=object)[
            np.random.default_rng([seed, quarter.year, quarter.q, 1, *([part] if part else [])]).choice(
                len(SIM_EXPORTERS), len(t_ms), p=SIM_EXPORTER_P)], pa.string()),
        "flow_type": pa.array(np.full(len(t_ms), "simulated", dtype=object), pa.string()),
        "src_addr": pc.if_else(pa.array(out), local_s, peer_s),
        "dst_addr": pc.if_else(pa.array(out), peer_s, local_s),
        "src_port": np.where(out, cols["lport"], cols["pport"]).astype(np.uint16),
        "dst_port": np.where(out, cols["pport"], cols["lport"]).astype(np.uint16),
        "proto": np.full(len(t_ms), 6, np.uint8),
        "bytes": nbytes,
        "packets": np.maximum(nbytes // 1400, 1),
        "sampling_rate": np.ones(len(t_ms), np.uint32),
    })
    batch = max(batch, 1)
    for i in range(0, table.num_rows, batch):
        store.write(table.slice(i, batch))
    return SimResult(len(t_ms), int(n_sess), len(np.unique(cols["peer"])), time.perf_counter() - t0)
