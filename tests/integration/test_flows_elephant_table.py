"""The elephants' own table (issue 20): compaction keeps the raw records of each quarter's
elephant candidates, the report finds its elephants there instead of scanning raw flows,
with the very same result; a table that no longer matches its quarter (a late record) is
not used; it outlives raw retention, and without it a report whose raw days are gone
fails rather than miss their elephants."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from trunkline.flows import elephant_table, maintain, scan
from trunkline.flows.elephants import Thresholds, hot_keys
from trunkline.flows.enrich import Enricher
from trunkline.flows.report import build
from trunkline.flows.rollup import Rollups
from trunkline.flows.simulate import PREVIOUS_SHIFT, simulate
from trunkline.flows.stats import (
    ELEPHANT_KEY,
    Quarter,
    arrow,
    elephant_flows,
    elephant_intervals,
    prepare,
)
from trunkline.flows.store import FlowStore, duckdb_connect

Q = Quarter(2025, 4)
BAR = Thresholds().min_bytes  # bytes
LOCAL = "198.51.100.10"


def _ms(*a) -> int:
    return int(datetime(*a, tzinfo=UTC).timestamp() * 1000)


def _records(rows: list[dict]) -> pa.Table:
    base = {"flow_type": "ipfix", "exporter": "sim-us-east-1", "src_addr": LOCAL, "proto": 6,
            "packets": 10, "sampling_rate": 1, "dst_port": 443}
    t = pa.Table.from_pylist([{**base, **r, "time_end": r["time_start"] + 60_000} for r in rows])
    for i in (t.schema.get_field_index("time_start"), t.schema.get_field_index("time_end")):
        t = t.set_column(i, t.schema.names[i], t.column(i).cast(pa.timestamp("ms", tz="UTC")))
    return t


# tuples whose bytes are split over the quarter's three months: at the bar (a candidate,
# though no month alone holds a third more than a hair), a byte short of it (not one), and
# a sampled one (its bytes x the sampling rate reach the bar)
SPLIT = [{"src_port": 40001, "dst_addr": "203.0.113.1", "time_start": _ms(2025, m, 15), "bytes": b}
         for m, b in ((10, BAR // 3), (11, BAR // 3), (12, BAR - 2 * (BAR // 3)))]
SHORT = [{"src_port": 40002, "dst_addr": "203.0.113.2", "time_start": _ms(2025, m, 16), "bytes": b}
         for m, b in ((10, BAR // 3), (11, BAR // 3), (12, BAR - 2 * (BAR // 3) - 1))]
SAMPLED = [{"src_port": 40003, "dst_addr": "203.0.113.3", "time_start": _ms(2025, 11, 20),
            "bytes": BAR // 100, "sampling_rate": 100}]


@pytest.fixture(scope="module")
def enricher(shared_data: Path) -> Enricher:
    return Enricher.from_dir(shared_data / "enrich")


@pytest.fixture(scope="module")
def compacted(enricher, tmp_path_factory) -> Path:
    """Two simulated quarters (with elephants) and the split tuples, written in batches
    with their rollups, then compacted."""
    root = tmp_path_factory.mktemp("eltable") / "store"
    store = FlowStore(root, rollups=Rollups(enricher))
    simulate(Q.prev(), store, enricher, 10_000, seed=11, drift=0.5, shift=PREVIOUS_SHIFT, batch=4_000)
    simulate(Q, store, enricher, 30_000, seed=11, batch=8_000)
    store.write(_records(SPLIT + SHORT + SAMPLED))
    n = maintain.compact(store, scan.raw_days(store))
    assert n["elephant_quarters"] == 2
    return root


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "store"
    shutil.copytree(src, dst)
    return dst


def _table(root: Path, q: Quarter = Q) -> pa.Table:
    files = sorted((root / f"rollup={elephant_table.LEVEL}" / f"day={q.start:%Y-%m-%d}").glob("*.parquet"))
    assert files
    return arrow(duckdb_connect(), f"SELECT * FROM read_parquet({[str(f) for f in files]}, hive_partitioning = false)")


def _tuples(t: pa.Table) -> set[tuple]:
    cols = [t.column(c).to_pylist() for c in ELEPHANT_KEY]
    return {row for row in zip(*cols, strict=True) if row[0] is not None}


def _strip(r: dict) -> str:
    r = dict(r)
    r.pop("generated_at")
    r.pop("source")
    return json.dumps(r, sort_keys=True)


def test_the_table_holds_the_tuples_that_can_be_elephants(compacted, enricher):
    t = _table(compacted)
    # the raw path's own steps: tuples past the size bar, cut into intervals, those with a hot run
    con = FlowStore(compacted).connect()
    assert elephant_flows(con, Q.start, Q.end, BAR * 8) > 0
    prepare(con, enricher, Q.start, Q.end, table="el_flows")
    th = Thresholds()
    iv = elephant_intervals(con, th.interval_s, BAR * 8)
    hot = hot_keys(iv["k"], iv["i"], iv["bits"], th)
    keys = arrow(con, "SELECT * FROM el_keys")
    rows = zip(*(keys.column(c).to_pylist() for c in (*ELEPHANT_KEY, "k")), strict=True)
    want = {r[:-1] for r in rows if r[-1] in set(hot.tolist())}
    assert len(want) < len(_tuples(keys))  # most tuples past the size bar never run hot
    assert _tuples(t) == want
    n = con.execute("SELECT count(*) FROM ef e JOIN el_keys k ON "
                    + " AND ".join(f"e.{c} IS NOT DISTINCT FROM k.{c}" for c in ELEPHANT_KEY)
                    + f" WHERE k.k IN (SELECT unnest({sorted(hot.tolist())}))").fetchall()[0][0]
    assert t.num_rows - 1 == n  # all their records (+ the marker row)
    meta = set(zip(
        *(t.column(c).to_pylist() for c in ("quarter_flows", "min_bits", "interval_s", "rate_on_bps",
                                            "on_intervals")), strict=True))
    total = sum(scan.raw_counts(FlowStore(compacted), scan.days_of(Q.start, Q.end)).values())
    assert meta == {(total, BAR * 8.0, th.interval_s, th.rate_on_bps, th.on_intervals)}


def test_a_tuple_split_over_the_months_is_kept_at_the_bar(compacted, tmp_path):
    """Pigeonhole: no month holds the bar, but the quarter does (to the byte). With an
    entry rate these records reach, the table holds exactly the tuples at the bar."""
    root = _copy(compacted, tmp_path)
    low = Thresholds(rate_on_bps=1e6, rate_off_bps=5e5, on_intervals=1)
    r = elephant_table.derive(FlowStore(root), Q, low)
    assert r["tuples_size_bar"] >= r["tuples"] > 0
    tuples = {(s, d) for s, d, *_ in _tuples(_table(root))}
    assert (LOCAL, "203.0.113.1") in tuples and (LOCAL, "203.0.113.3") in tuples
    assert (LOCAL, "203.0.113.2") not in tuples  # a byte short of the bar


def test_the_report_reads_the_table_and_equals_the_raw_scan(compacted, enricher):
    store = FlowStore(compacted)
    rep, _ = build(store, Q, enricher)
    raw, _ = build(store, Q, enricher, source="raw")
    assert rep["source"]["kind"] == "rollups"
    assert rep["source"]["elephants"] == {"kind": elephant_table.LEVEL, "reason": ""}
    assert raw["source"]["elephants"]["kind"] == "raw"
    assert rep["elephants"]["count"] > 0
    assert _strip(rep) == _strip(raw)
    # a report asking for smaller elephants than the table holds scans raw flows
    low = Thresholds(min_bytes=BAR / 2)
    rep, _ = build(store, Q, enricher, thresholds=low)
    assert rep["source"]["elephants"]["kind"] == "raw" and "asks for" in rep["source"]["elephants"]["reason"]
    assert _strip(rep) == _strip(build(store, Q, enricher, thresholds=low, source="raw")[0])
    # stricter thresholds read the table (a superset of their tuples)
    strict = Thresholds(rate_on_bps=2e8, on_intervals=3, min_bytes=2 * BAR, rate_off_bps=1e7, min_duration_s=300)
    rep, _ = build(store, Q, enricher, thresholds=strict)
    assert rep["source"]["elephants"]["kind"] == elephant_table.LEVEL and rep["elephants"]["count"] > 0
    assert _strip(rep) == _strip(build(store, Q, enricher, thresholds=strict, source="raw")[0])


def test_a_late_record_makes_the_table_stale_until_the_next_compaction(compacted, enricher, tmp_path):
    root = _copy(compacted, tmp_path)
    store = FlowStore(root, rollups=Rollups(enricher))
    # a late record that makes a new candidate: the stale table would miss it
    store.write(_records([{"src_port": 40004, "dst_addr": "203.0.113.4", "time_start": _ms(2025, 11, 2, 3, m),
                           "bytes": BAR} for m in range(0, 10)]))
    rep, _ = build(store, Q, enricher)
    assert rep["source"]["kind"] == "rollups"
    assert rep["source"]["elephants"]["kind"] == "raw"
    assert "derived from" in rep["source"]["elephants"]["reason"]
    raw, _ = build(store, Q, enricher, source="raw")
    assert _strip(rep) == _strip(raw)
    assert any(e["dst_addr"] == "203.0.113.4" for e in rep["elephants"]["top"])
    part = root / f"rollup={elephant_table.LEVEL}" / f"day={Q.start:%Y-%m-%d}"
    stale = sorted(part.glob("*.parquet"))
    assert maintain.compact(store, scan.raw_days(store))["elephant_quarters"] == 1  # Q4 again, not Q3
    assert sorted(part.glob("*.parquet")) != stale
    again, _ = build(store, Q, enricher)
    assert again["source"]["elephants"]["kind"] == elephant_table.LEVEL
    assert _strip(again) == _strip(raw)


def test_the_table_outlives_raw_retention_and_without_it_the_report_fails(compacted, enricher, tmp_path):
    root = _copy(compacted, tmp_path)
    store = FlowStore(root)
    before, _ = build(store, Q, enricher)
    gone = sorted(root.glob("day=2025-11-*"))
    assert gone
    for d in gone:  # retention removed November's raw flows
        shutil.rmtree(d)
    after, _ = build(store, Q, enricher)
    assert after["source"]["elephants"]["kind"] == elephant_table.LEVEL
    assert _strip(after) == _strip(before)
    assert any(e["start"].startswith("2025-11") for e in after["elephants"]["top"])
    # compaction cannot rebuild the table from what is left: it keeps the one it has
    r = elephant_table.derive_quarters(store, scan.raw_days(store, Q.start, Q.end))
    assert r["quarters"] == 0 and "gone" in r["skipped"][str(Q)]
    assert _strip(build(store, Q, enricher)[0]) == _strip(before)
    shutil.rmtree(root / f"rollup={elephant_table.LEVEL}" / f"day={Q.start:%Y-%m-%d}")
    with pytest.raises(ValueError, match="are gone"):
        build(store, Q, enricher)


def test_two_tables_at_once_are_not_added_up(compacted, enricher, tmp_path):
    root = _copy(compacted, tmp_path)
    part = root / f"rollup={elephant_table.LEVEL}" / f"day={Q.start:%Y-%m-%d}"
    [f] = list(part.glob("*.parquet"))
    shutil.copy(f, part / "copy.parquet")  # a reader between a new table's write and the old's delete
    store = FlowStore(root)
    rep, _ = build(store, Q, enricher)
    assert rep["source"]["elephants"]["kind"] == "raw" and "2 files" in rep["source"]["elephants"]["reason"]
    assert _strip(rep) == _strip(build(store, Q, enricher, source="raw")[0])


def test_the_command_says_where_the_elephants_came_from(compacted, shared_data, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from trunkline.cli.main import cli

    monkeypatch.setenv("TRUNKLINE_ENRICH_DATA", str(shared_data / "enrich"))
    root = _copy(compacted, tmp_path)
    args = ["flows", "report", "--store", str(root), "--quarter", str(Q), "--out", str(tmp_path / "r")]
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 0 and "from rollups;" in r.output and "elephants from raw" not in r.output, r.output
    shutil.rmtree(root / f"rollup={elephant_table.LEVEL}")
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert f"elephants from raw flows (no {elephant_table.LEVEL} table for {Q}" in r.output, r.output
