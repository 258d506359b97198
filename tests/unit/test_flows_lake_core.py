"""The flow lake's pure parts and a local store: what a key is (hostile listings), the
retention rules and plan (UTC, whatever TZ), file names that never collide, and a local
store that skips and counts what is not its own instead of crashing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.flows import lake as lk
from trunkline.flows.retention import parse_keep, plan
from trunkline.flows.schema import FLOW_SCHEMA
from trunkline.flows.store import FlowStore


def _flows(n: int, day: str = "2025-11-03", first: int = 0) -> pa.Table:
    t0 = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)
    return pa.table({
        "time_start": pa.array([t0 + i * 1000 for i in range(n)], pa.timestamp("ms", tz="UTC")),
        "time_end": pa.array([t0 + i * 1000 + 500 for i in range(n)], pa.timestamp("ms", tz="UTC")),
        "src_addr": [f"10.0.0.{i % 250}" for i in range(n)],
        "bytes": pa.array([first + i for i in range(n)], pa.uint64()),
    })


@pytest.mark.parametrize("rel,want", [
    ("day=2025-11-03/flows-a.parquet", ("raw", date(2025, 11, 3))),
    ("rollup=5m/day=2025-11-03/flows-a.parquet", ("5m", date(2025, 11, 3))),
    ("rollup=1h/day=2024-02-29/x.parquet", ("1h", date(2024, 2, 29))),
    ("quarantine/flows-a.parquet", ("quarantine", None)),
    ("_collector_status.json", None),
    ("day=2025-11-03/.flows-a.parquet.tmp", None),
    ("day=2025-11-03/../flows-a.parquet", "unsafe"),
    ("day=2025-11-03//flows-a.parquet", "unsafe"),
    ("./day=2025-11-03/flows-a.parquet", "unsafe"),
    ("day=2025-11-03/a\\b.parquet", "unsafe"),
    ("day=2025-11-03/a\x00.parquet", "unsafe"),
    ("", "unsafe"),
    ("day=2025-13-45/flows-a.parquet", "bad_day"),
    ("day=2025-11-3/flows-a.parquet", "foreign"),
    ("day=2025-11-03/readme.txt", "foreign"),
    ("day=2025-11-03/.hidden.parquet", "foreign"),
    ("notes.parquet", "foreign"),
    ("rollup=/day=2025-11-03/x.parquet", "foreign"),
    ("rollup=raw/day=2025-11-03/x.parquet", "foreign"),
    ("rollup=5m/x.parquet", "foreign"),
    ("rollup=5m/day=2025-11-03/deeper/x.parquet", "foreign"),
    ("quarantine/day=2025-11-03/x.parquet", "foreign"),
])
def test_classify(rel, want):
    assert lk.classify(rel) == want


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_classify_never_trusts_an_unsafe_key(rel):
    kind = lk.classify(rel)
    if isinstance(kind, tuple):
        parts = rel.split("/")
        assert all(p not in ("", ".", "..") for p in parts) and "\\" not in rel
        assert rel.endswith(".parquet") and 2 <= len(parts) <= 3


def test_file_names_are_unique_and_say_who_wrote_them():
    names = {lk.file_name() for _ in range(2000)}
    assert len(names) == 2000
    name = next(iter(names))
    assert f"-{os.getpid()}-" in name and name.endswith(".parquet")
    host = socket.gethostname()[:10].replace("_", "-")
    assert host.split(".")[0][:5] in name
    assert lk.classify(f"day=2025-01-01/{name}") == ("raw", date(2025, 1, 1))


def test_parse_keep():
    keep = parse_keep("raw=14d, 5m=180d,1h=forever,quarantine=2w")
    assert keep == {"raw": timedelta(days=14), "5m": timedelta(days=180), "1h": None,
                    "quarantine": timedelta(days=14)}
    for bad in ("", "raw", "raw=", "raw=14", "raw=abc", "raw=1d,raw=2d", "../x=1d", "=1d"):
        with pytest.raises(ValueError):
            parse_keep(bad)


def _entry(level, day, mtime=None, rel=None):
    rel = rel or (f"day={day}/f.parquet" if level == "raw" else
                  f"quarantine/{mtime}.parquet" if level == "quarantine" else
                  f"rollup={level}/day={day}/f.parquet")
    return lk.Entry("b/" + rel, rel, 100, mtime, level, day)


def test_plan_deletes_whole_days_entirely_older_than_the_window():
    days = [date(2025, 11, 1) + timedelta(days=i) for i in range(30)]  # Nov 1 .. Nov 30
    listing = lk.Listing([_entry("raw", d) for d in days] + [_entry("5m", d) for d in days]
                         + [_entry("1h", d) for d in days] + [_entry("1d", d) for d in days])
    now = datetime(2025, 11, 30, 12, 0, tzinfo=UTC)
    p = plan(listing, {"raw": timedelta(days=14), "5m": timedelta(days=20), "1h": None}, now)
    # raw: Nov 16 ends at Nov 17 00:00 > Nov 16 12:00 (now - 14 d): kept; Nov 15 deleted
    assert [e.day for e in p["raw"].delete] == days[:15]
    assert p["raw"].oldest_kept == "2025-11-16" and p["raw"].keep_files == 15
    assert [e.day for e in p["5m"].delete] == days[:9]          # <= Nov 9 (ends Nov 10)
    assert p["1h"].delete == [] and p["1h"].rule
    assert p["1d"].delete == [] and not p["1d"].rule             # no rule: kept
    assert p["raw"].partitions_deleted[0] == "day=2025-11-01"
    # a monthly level's partition (the month's first day) goes once the whole month is old
    months = lk.Listing([_entry("peers_1mo", date(2025, m, 1)) for m in (9, 10, 11)])
    p = plan(months, {"peers_1mo": timedelta(days=14)}, now)   # now - 14 d: Nov 16 12:00
    assert [e.day for e in p["peers_1mo"].delete] == [date(2025, 9, 1), date(2025, 10, 1)]
    p = plan(months, {"peers_1mo": timedelta(days=31)}, now)   # Oct 30 12:00: October not yet
    assert [e.day for e in p["peers_1mo"].delete] == [date(2025, 9, 1)]
    # a quarterly level's partition (the quarter's first day) once the whole quarter is old
    quarters = lk.Listing([_entry("elephants_1q", date(y, m, 1)) for y, m in ((2025, 4), (2025, 7), (2025, 10))])
    p = plan(quarters, {"elephants_1q": timedelta(days=14)}, now)  # Nov 16: Q3 ended Oct 1
    assert [e.day for e in p["elephants_1q"].delete] == [date(2025, 4, 1), date(2025, 7, 1)]
    p = plan(quarters, {"elephants_1q": timedelta(days=60)}, now)  # Oct 1 12:00: Q3 ended at 00:00
    assert [e.day for e in p["elephants_1q"].delete] == [date(2025, 4, 1), date(2025, 7, 1)]
    p = plan(quarters, {"elephants_1q": timedelta(days=61)}, now)  # Sep 30 12:00: Q3 not yet
    assert [e.day for e in p["elephants_1q"].delete] == [date(2025, 4, 1)]
    # exactly at the edge: a day whose end equals now - window goes
    edge = datetime(2025, 11, 30, 0, 0, tzinfo=UTC)
    assert plan(listing, {"raw": timedelta(days=14)}, edge)["raw"].delete[-1].day == \
        date(2025, 11, 15)


def test_plan_is_the_same_instant_in_any_zone():
    days = [date(2025, 12, 1) + timedelta(days=i) for i in range(20)]
    listing = lk.Listing([_entry("raw", d) for d in days])
    utc = datetime(2025, 12, 20, 3, 0, tzinfo=UTC)
    kiritimati = utc.astimezone(timezone(timedelta(hours=14)))   # already Dec 20 17:00 there
    adak = utc.astimezone(timezone(timedelta(hours=-10)))        # still Dec 19 there
    keep = {"raw": timedelta(days=7)}
    want = [e.day for e in plan(listing, keep, utc)["raw"].delete]
    assert want == days[:12]  # Dec 12 ends Dec 13 00:00 <= Dec 13 03:00
    for now in (kiritimati, adak):
        assert [e.day for e in plan(listing, keep, now)["raw"].delete] == want
    with pytest.raises(ValueError):
        plan(listing, keep, datetime(2025, 12, 20))  # naive: refused


def test_plan_ages_the_quarantine_by_write_time():
    now = datetime(2025, 12, 20, tzinfo=UTC)
    old, new = now - timedelta(days=31), now - timedelta(days=29)
    listing = lk.Listing([_entry("quarantine", None, old), _entry("quarantine", None, new)])
    p = plan(listing, {"quarantine": timedelta(days=30)}, now)["quarantine"]
    assert [e.mtime for e in p.delete] == [old] and p.keep_files == 1


def test_local_store_skips_and_counts_what_is_not_its_own(tmp_path):
    store = FlowStore(tmp_path / "s")
    assert store.write(_flows(50)) == 50
    store.write(_flows(30, "2025-11-04", first=1000))
    day = tmp_path / "s" / "day=2025-11-03"
    (day / "zero.parquet").write_bytes(b"")
    (day / "garbage.parquet").write_bytes(b"PAR1" + os.urandom(200))
    (day / "notes.txt").write_text("not ours")
    (tmp_path / "s" / "day=2025-13-01").mkdir()
    pq.write_table(_flows(5), tmp_path / "s" / "day=2025-13-01" / "x.parquet")
    wrong = pa.table({"time_start": ["yesterday"], "bytes": ["lots"]})
    pq.write_table(wrong, day / "wrong-types.parquet")
    (day / ".flows-x.parquet.tmp").write_bytes(b"in flight")
    t = store.query("SELECT count(*) AS n, sum(bytes) AS b FROM flows")
    assert t.column("n")[0].as_py() == 80
    assert t.column("b")[0].as_py() == sum(range(50)) + sum(range(1000, 1030))
    assert dict(store.skipped) == {"too_small": 1, "unreadable": 1, "foreign": 1,
                                   "bad_day": 1, "schema": 1}
    assert len(store.files()) == 4  # 2 of ours + garbage + wrong-types (read, then skipped)
    assert all(p.name.startswith("flows-") or p.name in ("garbage.parquet", "wrong-types.parquet")
               for p in store.files())


def test_write_file_accepts_dirs_under_the_root_or_relative(tmp_path):
    store = FlowStore(str(tmp_path / "s"))
    store._write_file(store.root / "rollup=5m" / "day=2025-11-03", _flows(3))
    store._write_file(Path("rollup=5m") / "day=2025-11-04", _flows(4))
    assert len(store.files("5m")) == 2
    with pytest.raises(ValueError):
        store._write_file(tmp_path / "elsewhere", _flows(1))
    con = store.connect()
    store.register(con, "r5", "5m")
    assert con.execute("SELECT count(*) FROM r5").fetchone()[0] == 7
    assert con.execute("SELECT count(*) FROM flows").fetchone()[0] == 0


def test_empty_store_has_an_empty_flows_view(tmp_path):
    store = FlowStore(tmp_path / "none")
    t = store.query("SELECT * FROM flows")
    assert t.num_rows == 0 and t.schema.names == FLOW_SCHEMA.names
    assert store.quarantine().num_rows == 0


def test_gc_cli_ages_by_the_utc_clock_whatever_tz(tmp_path):
    """Partitions around the edge of the window, gc run under zones 14 h either side of
    UTC: the days deleted are those whose whole UTC day is older than the window."""
    root = tmp_path / "s"
    store = FlowStore(root)
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=i) for i in range(0, 20)]
    for d in days:
        store._write_file(root / f"day={d}", _flows(2, d.isoformat()))
        store._write_file(root / "rollup=1h" / f"day={d}", _flows(1, d.isoformat()))
    (root / "day=2000-01-01").mkdir()
    (root / "day=2000-01-01" / "keep-me.txt").write_text("not ours: never deleted")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for tz in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
        r = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "flows", "gc",
                            "--store", str(root), "--keep", "raw=10d", "--dry-run", "--json"],
                           capture_output=True, text=True, env={**env, "TZ": tz}, timeout=120)
        assert r.returncode == 0, r.stderr
        out = {lv["level"]: lv for lv in json.loads(r.stdout)["levels"]}
        now = datetime.now(UTC)
        want = sum(1 for d in days if datetime(d.year, d.month, d.day, tzinfo=UTC)
                   + timedelta(days=1) <= now - timedelta(days=10))
        assert out["raw"]["files_deleted"] == want and out["raw"]["partitions_deleted"] == want
        assert out["1h"]["files_deleted"] == 0 and out["1h"]["keep"] is None
    assert len(store.files()) == 20  # dry run
    r = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "flows", "gc",
                        "--store", str(root), "--keep", "raw=10d,1h=forever"],
                       capture_output=True, text=True, env={**env, "TZ": "Pacific/Kiritimati"},
                       timeout=120)
    assert r.returncode == 0, r.stderr
    left = sorted(p.parent.name for p in store.files())
    assert left == sorted(f"day={d}" for d in days[:11])  # today and 10 whole days before
    assert len(store.files("1h")) == 20
    assert (root / "day=2000-01-01" / "keep-me.txt").exists()
    assert not (root / f"day={days[-1]}").exists()  # the emptied partition dir is gone


def test_files_keep_statistics_for_times_and_counters_not_for_addresses(tmp_path):
    """DuckDB prunes files by the min/max of times; address text gets none (costly to
    compute over every record, never pruned on) - and the data reads back whole."""
    t = _flows(500)
    FlowStore(tmp_path).write(t)
    (f,) = list(tmp_path.glob("day=*/*.parquet"))
    meta = pq.ParquetFile(f).metadata.row_group(0)
    stats = {meta.column(i).path_in_schema: meta.column(i).is_stats_set
             for i in range(meta.num_columns)}
    assert stats["time_start"] and stats["time_end"] and stats["bytes"]
    assert not stats["src_addr"] and not stats["dst_addr"]
    lo = meta.column(list(stats).index("time_start")).statistics.min
    assert lo == t.column("time_start")[0].as_py()
    back = pq.read_table(f).select(t.column_names)
    assert back.column("src_addr").to_pylist() == t.column("src_addr").to_pylist()
