"""Rollups at ingest (issue 20): the report from the rollups every writer leaves beside
its raw flows equals, figure for figure, the report from a scan of the raw flows, in any
time zone; a gap in the rollups (a store written before them, a writer that died between
its raw file and its rollups, another enrichment) is seen and the report scans raw flows
instead; ``flows rollup`` backfills; partial rollups merge to those of the whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from trunkline.flows import maintain, rollup, scan
from trunkline.flows.enrich import Enricher
from trunkline.flows.report import build
from trunkline.flows.rollup import Rollups
from trunkline.flows.simulate import PREVIOUS_SHIFT, SIM_REGIONS, simulate
from trunkline.flows.stats import Quarter, arrow
from trunkline.flows.store import FlowStore, duckdb_connect

Q = Quarter(2025, 4)
LOCAL = "198.51.100.10"
GB = 10**9


def _ms(*a) -> int:
    return int(datetime(*a, tzinfo=UTC).timestamp() * 1000)


def _odd_records() -> pa.Table:
    """What the simulator never writes: trunkline's own transfers (RTT, retransmits),
    zero-byte records, a missing address and exporter, sampling, the last millisecond of
    the quarter and the first of the next, a record on a day boundary."""
    recs = []
    for i, (rtt, rtx) in enumerate([(1000, 1), (2000, 2), (3000, 7)]):
        t = _ms(2025, 10, 2) + i * 60000
        recs.append({"time_start": t, "time_end": t + 60000, "exporter": "mover", "flow_type": "trunkline",
                     "src_addr": LOCAL, "dst_addr": "207.53.234.51", "src_port": 50000, "dst_port": 443,
                     "proto": 6, "bytes": 10 * GB, "packets": 1000, "sampling_rate": 1,
                     "rtt_us": rtt, "retransmits": rtx})
    base = {"flow_type": "ipfix", "src_port": 443, "dst_port": 40000, "proto": 6, "packets": 10,
            "sampling_rate": 1, "exporter": "sim-us-east-1", "src_addr": LOCAL}
    for t, dst, nbytes, extra in [
        (_ms(2025, 11, 3, 12), "73.110.185.30", 0, {}),              # zero bytes: not "seen"
        (_ms(2025, 11, 3, 12, 1), "73.110.185.99", 0, {}),
        (_ms(2025, 11, 3, 12, 2), None, 5 * GB, {}),                 # no peer address
        (_ms(2025, 11, 4), "54.225.48.141", 3 * GB, {"exporter": None, "sampling_rate": 0}),
        (_ms(2025, 12, 31, 23, 59, 59) + 999, "204.195.209.220", 7 * GB, {"sampling_rate": 100}),
        (_ms(2026, 1, 1), "204.195.209.220", 9 * GB, {}),              # the next quarter
        (_ms(2025, 10, 1), "17.253.144.10", 11 * GB, {"dst_port": 1}),  # Apple: "other"
    ]:
        recs.append({**base, "time_start": t, "time_end": t + 1000, "dst_addr": dst, "bytes": nbytes,
                     **extra})
    t = pa.Table.from_pylist(recs)
    for i in (0, 1):
        t = t.set_column(i, t.schema.names[i], t.column(i).cast(pa.timestamp("ms", tz="UTC")))
    return t


@pytest.fixture(scope="module")
def enricher(shared_data: Path) -> Enricher:
    return Enricher.from_dir(shared_data / "enrich")


@pytest.fixture(scope="module")
def store_dir(enricher, tmp_path_factory) -> Path:
    """Two simulated quarters written in many small batches, each with its rollups."""
    root = tmp_path_factory.mktemp("rollups") / "store"
    store = FlowStore(root, rollups=Rollups(enricher))
    simulate(Q.prev(), store, enricher, 20_000, seed=3, drift=0.5, shift=PREVIOUS_SHIFT, batch=3_000)
    simulate(Q, store, enricher, 40_000, seed=3, batch=7_000)
    store.write(_odd_records())
    return root


def _strip(r: dict) -> dict:
    r = dict(r)
    r.pop("generated_at")
    r.pop("source")
    return r


SCRIPT = """
import json, sys
from trunkline.flows.enrich import Enricher
from trunkline.flows.report import build
from trunkline.flows.stats import Quarter, arrow
from trunkline.flows.store import FlowStore
store, out, data, source, sites = sys.argv[1:6]
report, _ = build(FlowStore(store), Quarter.parse("2025Q4"), Enricher.from_dir(data), source=source,
                  regions=json.loads(sites))
open(out, "w").write(json.dumps(report, indent=1))
"""


def test_report_from_rollups_equals_the_raw_scan_in_any_time_zone(store_dir, shared_data, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TZ"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    runs = [(tz, src) for tz in ("UTC", "America/Los_Angeles", "Asia/Kolkata") for src in ("rollups", "raw")]
    outs = {run: tmp_path / f"{run[0].replace('/', '_')}-{run[1]}.json" for run in runs}
    procs = {run: subprocess.Popen([sys.executable, "-c", SCRIPT, str(store_dir), str(outs[run]),
                                    str(shared_data / "enrich"), run[1], json.dumps(SIM_REGIONS)],
                                   env={**env, "TZ": run[0]}) for run in runs}
    for run, p in procs.items():
        assert p.wait(timeout=240) == 0, run
    reps = {run: json.loads(outs[run].read_text()) for run in runs}
    assert {run: r["source"]["kind"] for run, r in reps.items()} == {run: run[1] for run in runs}
    want = json.dumps(_strip(reps[("UTC", "raw")]), sort_keys=True)
    for run, r in reps.items():
        assert json.dumps(_strip(r), sort_keys=True) == want, run
    r = reps[("UTC", "rollups")]
    # the odd records are in it: mover, unseen zero-byte peers, the quarter's last millisecond
    assert r["mover"]["flows"] == 3 and r["mover"]["rtt_us_median"] == 2000.0
    assert r["totals"]["flows"] == 40_000 + 3 + 6
    assert r["elephants"]["count"] > 0 and r["top_endpoints"]["top"]
    assert any(c["region"] == "US-West" for c in r["regions"]["cells"])


def test_merged_partial_rollups_are_the_rollups_of_the_whole(store_dir, enricher):
    store = FlowStore(store_dir)
    con = store.connect()
    whole = rollup.from_store_window(con, enricher, Q.prev().start, Q.next().end)
    for level in rollup.INGEST_TABLES:
        files = store.rollup_files(level)
        assert len(files) > (10 if level != "mover" else 0)  # many batches, not one file
        parts = [arrow(duckdb_connect(), f"SELECT * EXCLUDE (rollup, day) FROM read_parquet('{f}', "
                                         "hive_partitioning = true)") for f in files]
        got, ref = rollup.merge(level, parts), rollup.merge(level, [whole[level]])
        if level == "mover":
            got, ref = got.sort_by("t_ms"), ref.sort_by("t_ms")
        assert got.equals(ref), level
    # derived levels: the 1h table of the 5-minute rows is the 1h table of the whole
    h = rollup.derive(rollup.merge("5m", [whole["5m"]]), "1h")
    assert h.column("t_ms").to_numpy().max() % 3_600_000 == 0
    assert sum(h.column("flows").to_pylist()) == sum(whole["5m"].column("flows").to_pylist())


def test_a_gap_in_the_rollups_is_seen_and_backfill_closes_it(store_dir, enricher, shared_data, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(store_dir, root)
    store = FlowStore(root)
    assert scan.coverage(store, enricher, Q.prev().start, Q.end) == ""
    ref = _strip(build(store, Q, enricher, source="raw")[0])
    # a writer died between its raw file and its rollups: one day's 5-minute file is gone
    victim = store.rollup_files("5m")[len(store.rollup_files("5m")) // 2]
    victim.unlink()
    why = scan.coverage(store, enricher, Q.prev().start, Q.end)
    assert "5m rollups of" in why and "raw partition" in why
    rep = build(store, Q, enricher)[0]
    assert rep["source"]["kind"] == "raw" and rep["source"]["reason"] == why
    with pytest.raises(ValueError, match="do not cover"):
        build(store, Q, enricher, source="rollups")
    # backfill of the damaged day rebuilds it from raw: one file per level, the same report
    rows = maintain.backfill(store, enricher, [victim.parent.name.removeprefix("day=")])
    assert rows["5m"] > 0 and rows["peers"] > 0
    assert scan.coverage(store, enricher, Q.prev().start, Q.end) == ""
    day = victim.parent
    assert len(list(day.glob("*.parquet"))) == 1
    assert (store.rollup_dir("1h") / day.name).is_dir() and (store.rollup_dir("1d") / day.name).is_dir()
    rep = build(store, Q, enricher)[0]
    assert rep["source"]["kind"] == "rollups"
    assert _strip(rep) == ref
    # rollups made with another enrichment (another taxonomy) are not used
    tax = tmp_path / "tax.toml"
    tax.write_text('[[rules]]\nname = "Apple as a CDN"\ncategory = "cdn"\nasns = [714]\nsource = "test"\n')
    other = Enricher.from_dir(shared_data / "enrich", taxonomy_file=tax)
    assert "another enrichment" in scan.coverage(store, other, Q.prev().start, Q.end)
    assert build(store, Q, other)[0]["source"]["kind"] == "raw"


def test_a_store_without_rollups_is_reported_from_raw(enricher, tmp_path):
    store = FlowStore(tmp_path / "s")
    store.write(_odd_records())
    rep = build(store, Q, enricher)[0]
    assert rep["source"]["kind"] == "raw" and "no 5m rollups" in rep["source"]["reason"]


def test_compaction_merges_each_days_files_and_keeps_the_report(store_dir, enricher, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(store_dir, root)
    store = FlowStore(root)
    before = _strip(build(store, Q, enricher)[0])
    n = maintain.compact(store, scan.raw_days(store))
    assert n["after"] < n["before"]
    for level in rollup.INGEST_TABLES:
        days = [f.parent for f in store.rollup_files(level)]
        assert len(days) == len(set(days)), level  # one file per day
    rep = build(store, Q, enricher)[0]
    assert rep["source"]["kind"] == "rollups"
    assert _strip(rep) == before
    # the monthly peer table: compaction derived one per month, and the report reads it
    p = scan.plan(store, enricher, Q.prev().start, Q.end)
    assert p.why == "" and p.monthly == [*Q.prev().months(), *Q.months()]
    assert len(store.rollup_files(rollup.MONTHLY)) == 3 + 3 + 1  # and 2026-01 (one record)


def test_monthly_peers_give_way_to_late_records_and_outlive_raw_retention(store_dir, enricher, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(store_dir, root)
    store = FlowStore(root, rollups=Rollups(enricher))
    maintain.compact(store, scan.raw_days(store))
    import pyarrow.parquet as pq

    daily_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in store.rollup_files("peers"))
    monthly = build(store, Q, enricher)[0]
    assert monthly["source"]["kind"] == "rollups"
    assert monthly["source"]["rows"]["peers"] < daily_rows  # a peer seen on several days: one row
    assert build(store, Q, enricher, source="raw")[0]["source"]["rows"]["peers"] == \
        monthly["source"]["rows"]["peers"]  # the raw scan makes the same monthly rows
    # a late record for November, written with its rollups after the compaction: the month's
    # table misses it, so November is read from its daily rows; the report still equals raw
    late = _odd_records().slice(3, 1)  # 2025-11-03, zero bytes: give it some
    store.write(late.set_column(late.column_names.index("bytes"), "bytes", pa.array([4 * GB])))
    p = scan.plan(store, enricher, Q.prev().start, Q.end)
    assert p.why == "" and "2025-11" not in p.monthly and "2025-10" in p.monthly
    rep = build(store, Q, enricher)[0]
    assert rep["source"]["kind"] == "rollups"
    assert _strip(rep) == _strip(build(store, Q, enricher, source="raw")[0])
    assert rep["totals"]["flows"] == monthly["totals"]["flows"] + 1
    # retention removed a raw day: its rollups are what is left, and the report keeps it
    # (compacted first: the quarter's elephant table is derived from raw flows)
    before = _strip(rep)
    maintain.compact(store, scan.raw_days(store))
    shutil.rmtree(root / "day=2025-10-07")
    assert scan.coverage(store, enricher, Q.prev().start, Q.end) == ""
    assert _strip(build(store, Q, enricher)[0]) == before
    # ... and when the rollups of another day are damaged too, no raw scan stands in for
    # them (it would miss 2025-10-07 and look complete): the report fails
    next(iter((store.rollup_dir("5m") / "day=2025-10-08").glob("*.parquet"))).unlink()
    with pytest.raises(ValueError, match="are gone"):
        build(store, Q, enricher)


def test_rollups_rewritten_on_a_disk_that_fills_are_all_written_or_none(store_dir, enricher,
                                                                        tmp_path):
    """A backfill writes a day's five rollup levels before it deletes the old files. When
    the disk fills after the first three, the new files are removed again: the store
    holds exactly the files it held, and the report is the same. (Left beside the old
    ones, those three levels would hold the day twice.) With room again it succeeds."""
    import shutil

    from conftest import fill_disk, mounted_tmpfs

    day = FlowStore(store_dir).rollup_files("5m")[0].parent.name.removeprefix("day=")
    scratch = tmp_path / "scratch"          # what the backfill writes, in its order
    shutil.copytree(store_dir, scratch)
    before = {p for p in scratch.rglob("*.parquet")}
    maintain.backfill(FlowStore(scratch), enricher, [day])
    new = sorted((p for p in scratch.rglob("*.parquet") if p not in before),
                 key=lambda p: p.stat().st_mtime_ns)
    assert len(new) >= 5, new
    room = sum(p.stat().st_size for p in new[:3]) + new[3].stat().st_size // 2 + 8192
    size = sum(p.stat().st_size for p in store_dir.rglob("*") if p.is_file())
    with mounted_tmpfs(tmp_path / "disk", f"{size // 1024 + 4096}k") as mnt:
        root = mnt / "store"
        shutil.copytree(store_dir, root)
        store = FlowStore(root)
        ref = _strip(build(store, Q, enricher)[0])
        held = sorted(str(p) for p in root.rglob("*") if p.is_file())
        filler = fill_disk(mnt)
        with open(filler, "r+b") as f:      # give back exactly ``room``
            f.truncate(filler.stat().st_size - room)
        with pytest.raises(OSError):
            maintain.backfill(store, enricher, [day])
        assert sorted(str(p) for p in root.rglob("*") if p.is_file()) == held
        assert scan.coverage(store, enricher, Q.prev().start, Q.end) == ""
        assert _strip(build(store, Q, enricher)[0]) == ref
        filler.unlink()
        maintain.backfill(store, enricher, [day])
        assert _strip(build(store, Q, enricher)[0]) == ref
