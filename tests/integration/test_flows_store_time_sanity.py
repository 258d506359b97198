"""Time sanity on the store's write path (issue 15): times far from the export header go
to a quarantine, never to new day partitions; one batch creates a bounded number of
partitions; times no reader can represent never reach the day partitions; `flows sql`
never crashes on a time Python cannot hold."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from trunkline.cli.main import cli
from trunkline.flows.decode import FlowDecoder
from trunkline.flows.sources.ingest import ingest_files
from trunkline.flows.sources.pcap import write_udp_pcap
from trunkline.flows.store import FlowStore
from trunkline.testing.flowcraft import (
    FLOW_FIELDS,
    flow_record,
    ipfix_msg,
    ipfix_set,
    template_record,
    template_set,
)

EXPORT = 1_700_000_000  # 2023-11-14T22:13:20Z


def _two_thousand_days_datagram() -> bytes:
    """One ~16 KiB datagram whose records claim 2000 different days."""
    recs = b"".join(flow_record(1, 2, 3, EXPORT - d * 86_400) for d in range(800)) + \
        b"".join(flow_record(1, 2, 3, EXPORT + d * 86_400) for d in range(1, 1200))
    return ipfix_msg(template_set(template_record(256, FLOW_FIELDS)), ipfix_set(256, recs),
                     export=EXPORT)


def _decode(*msgs: bytes):
    d = FlowDecoder()
    for m in msgs:
        d.feed(m, "192.0.2.1", EXPORT * 1000)
    return d.detach().to_table_with_reference()


def test_2000_days_in_one_datagram_write_one_partition(tmp_path):
    table, ref = _decode(_two_thousand_days_datagram())
    assert table.num_rows == 1999
    store = FlowStore(tmp_path, time_window_s=86_400)
    written = store.write(table, ref)
    days = sorted(p.name for p in tmp_path.glob("day=*"))
    assert written == 3 and days == ["day=2023-11-13", "day=2023-11-14", "day=2023-11-15"]
    assert store.quarantined == {"unrepresentable": 0, "time_window": 1996,
                                 "partition_limit": 0}
    q = store.quarantine()
    assert q.num_rows == 1996 and set(q.column("reason").to_pylist()) == {"time_window"}
    assert set(q.column("reference_ms").to_pylist()) == {EXPORT * 1000}
    assert store.query("SELECT count(*) FROM flows").column(0)[0].as_py() == 3


def test_partitions_per_write_are_bounded_without_a_reference(tmp_path):
    n = 50  # a flow log (no export header) spanning 50 days
    t = pa.table({"time_start": pa.array((EXPORT * 1000 + np.arange(n) * 86_400_000),
                                         pa.timestamp("ms", tz="UTC")),
                  "bytes": pa.array(np.ones(n, np.uint64))})
    t = t.append_column("time_end", t.column("time_start"))
    store = FlowStore(tmp_path, max_partitions_per_write=10)
    assert store.write(t) == 10
    assert len(list(tmp_path.glob("day=*"))) == 10
    assert store.quarantined["partition_limit"] == 40


def test_unrepresentable_times_never_reach_a_day_partition(tmp_path):
    top = (1 << 63) - 1  # the record time: 2^63-1 ms
    t = pa.table({"time_start": pa.array([top, EXPORT * 1000, -5], pa.timestamp("ms", tz="UTC")),
                  "time_end": pa.array([top, EXPORT * 1000, -5], pa.timestamp("ms", tz="UTC"))})
    store = FlowStore(tmp_path)
    assert store.write(t) == 1
    assert store.quarantined["unrepresentable"] == 2
    assert sorted(store.quarantine().column("time_start_ms").to_pylist()) == [-5, top]
    assert [p.name for p in tmp_path.glob("day=*")] == ["day=2023-11-14"]


def test_ipfix_max_times_from_a_capture_are_quarantined_by_ingest(tmp_path):
    fields = [(8, 4), (12, 4), (1, 4), (152, 8), (153, 8)]  # flowStart/EndMilliseconds
    rec = (1).to_bytes(4, "big") + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    top = ((1 << 63) - 1).to_bytes(8, "big")
    ok = (EXPORT * 1000).to_bytes(8, "big")
    msg = ipfix_msg(template_set(template_record(256, fields)),
                    ipfix_set(256, rec + top + top + rec + ok + ok), export=EXPORT)
    cap = tmp_path / "c.pcap"
    write_udp_pcap(cap, [(msg, 4739)], ts=EXPORT)
    out = ingest_files([cap], FlowStore(tmp_path / "store"))
    assert out["written_records"] == 1
    assert out["quarantined"]["unrepresentable"] == 1
    r = CliRunner().invoke(cli, ["flows", "sql", "--store", str(tmp_path / "store"),
                                 "SELECT max(time_start) AS t FROM flows"])
    assert r.exit_code == 0 and "2023-11-14" in r.output


def test_flows_sql_prints_a_time_python_cannot_hold(tmp_path):
    """A store written before the checks (or by another tool) holding year 20000."""
    d = tmp_path / "day=2023-11-14"
    d.mkdir()
    far = 568_971_820_800_000  # 20000-01-01 in ms: fine for DuckDB, not for Python
    t = pa.table({"time_start": pa.array([far], pa.timestamp("ms", tz="UTC")),
                  "time_end": pa.array([far], pa.timestamp("ms", tz="UTC")),
                  "bytes": pa.array([1], pa.uint64())})
    pq.write_table(t, d / "flows-old.parquet")
    for extra in ([], ["--json"]):
        r = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "flows", "sql",
                            "--store", str(tmp_path), *extra,
                            "SELECT time_start, bytes FROM flows"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "20000-01-01" in r.stdout
    js = json.loads(r.stdout)
    assert js[0]["bytes"] == 1


def test_a_live_batch_keeps_the_days_nearest_to_now(tmp_path):
    """Records claiming other days outnumber today's: today's still reach the store."""
    now = EXPORT * 1000
    days = [now] * 5 + [now + d * 86_400_000 for d in range(1, 30) for _ in range(20)]
    t = pa.table({"time_start": pa.array(days, pa.timestamp("ms", tz="UTC")),
                  "time_end": pa.array(days, pa.timestamp("ms", tz="UTC"))})
    store = FlowStore(tmp_path, max_partitions_per_write=3)
    assert store.write(t, now_ms=now) == 5 + 20 + 20
    assert sorted(p.name for p in tmp_path.glob("day=*")) == [
        "day=2023-11-14", "day=2023-11-15", "day=2023-11-16"]
    other = FlowStore(tmp_path / "b", max_partitions_per_write=3)
    assert other.write(t) == 60  # without a clock: the most populated days
