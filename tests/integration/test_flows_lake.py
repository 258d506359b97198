"""The flow lake on a real S3 server (SeaweedFS): the report read from an ``s3://`` store
(its rollups, compacted there, monthly peer tables included) equals the report of the same
flows in a local store; writers in several processes share
a prefix and lose nothing; retention per level deletes exactly the old day partitions;
a hostile listing is skipped and counted, never read, never a crash."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from trunkline.cli.main import cli
from trunkline.flows.store import FlowStore


def _run(*args: str, code: int = 0) -> CliRunner:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == code, r.output
    return r


def _keys(srv, bucket: str, prefix: str = "") -> dict[str, int]:
    """The bucket's keys and sizes, listed by boto3 (an independent reader)."""
    s3 = boto3.client("s3", endpoint_url=srv.endpoint_url, aws_access_key_id=srv.access_key,
                      aws_secret_access_key=srv.secret_key, region_name="us-east-1")
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return out


def _put(srv, bucket: str, key: str, data: bytes) -> None:
    s3 = boto3.client("s3", endpoint_url=srv.endpoint_url, aws_access_key_id=srv.access_key,
                      aws_secret_access_key=srv.secret_key, region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key=key, Body=data)


def _flows(n: int, day: str, first: int = 0) -> pa.Table:
    t0 = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)
    return pa.table({
        "time_start": pa.array([t0 + i for i in range(n)], pa.timestamp("ms", tz="UTC")),
        "time_end": pa.array([t0 + i + 10 for i in range(n)], pa.timestamp("ms", tz="UTC")),
        "bytes": pa.array(range(first, first + n), pa.uint64()),
    })


def _differences(a, b, path=""):
    """Leaves where two reports differ; floats by more than 1e-12 relative (DuckDB's
    parallel sums of doubles depend on row order: a local store read twice differs in the
    15th digit at a few million flows, measured with bench/flows_lake.py)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in _differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if abs(a - b) <= 1e-12 * max(abs(a), abs(b)) else [(path, a, b)]
    return [] if a == b else [(path, a, b)]


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


@pytest.mark.timeout(300)
def test_report_from_the_s3_lake_equals_the_local_store(aws_env, shared_data, tmp_path,
                                                        monkeypatch):
    monkeypatch.setenv("TRUNKLINE_ENRICH_DATA", str(shared_data / "enrich"))
    aws_env.create_bucket("lake-report")
    lake, local = "s3://lake-report/edge/flows", str(tmp_path / "local")
    for store in (lake, local):
        _run("flows", "simulate", "--quarter", "2025Q4", "--out", store, "--flows", "20000")
    keys = _keys(aws_env, "lake-report")
    assert keys and all(k.startswith(("edge/flows/day=2025-", "edge/flows/rollup="))
                        for k in keys), list(keys)[:5]
    raw = [k for k in keys if k.startswith("edge/flows/day=")]
    assert raw and len(raw) == len(FlowStore(local).files()) == len(FlowStore(lake).files())
    assert len(keys) > len(raw)  # the rollups went to the lake beside the raw flows
    reports = {}
    for name, store in (("s3", lake), ("local", local)):
        out = tmp_path / f"rep-{name}"
        t0 = time.perf_counter()
        r = _run("flows", "report", "--store", store, "--quarter", "2025Q4", "--out", str(out))
        print(f"report from the {name} store: {time.perf_counter() - t0:.2f} s")
        assert "warning" not in r.output
        rep = json.loads((out / "report.json").read_text())
        rep.pop("generated_at", None)
        reports[name + "-source"] = rep.pop("source")["kind"]
        reports[name] = rep
        reports[name + "-sketch"] = pq.read_table(out / "sketches.parquet")
    assert reports["s3"]["totals"]["flows"] == 20000
    # both reports read their store's rollups (simulate compacted both: monthly peers)
    assert (reports["local-source"], reports["s3-source"]) == ("rollups", "rollups")
    assert _differences(reports["s3"], reports["local"]) == []
    order = [(c, "ascending") for c in ("month", "metro", "category", "reg")]
    s3s, locs = (reports[k].sort_by(order) for k in ("s3-sketch", "local-sketch"))
    assert s3s.num_rows > 1000 and s3s.equals(locs)  # rows in any order: GROUP BY
    sql = ("SELECT date_trunc('month', time_start) AS m, count(*) AS n, sum(bytes) AS b "
           "FROM flows GROUP BY 1 ORDER BY 1")
    assert _run("flows", "sql", "--store", lake, sql).output == \
        _run("flows", "sql", "--store", local, sql).output
    st = json.loads(_run("flows", "status", "--store", lake, "--json").output)["store"]
    assert st["records"] == 30000 and st["files"] == len(raw)  # the raw flows' files
    assert st["bytes"] == sum(keys[k] for k in raw)


@pytest.mark.timeout(300)
def test_compaction_on_the_s3_lake_makes_monthly_peers_and_keeps_the_report(
        aws_env, shared_data, tmp_path, monkeypatch):
    """Writers' batches leave several rollup files a day and no monthly peer table;
    ``flows rollup --compact`` on the lake merges them there and derives the months, and
    the report (from those rollups) equals the local store's of the same flows."""
    from trunkline.flows import maintain, rollup, scan
    from trunkline.flows.enrich import Enricher
    from trunkline.flows.rollup import Rollups
    from trunkline.flows.simulate import PREVIOUS_SHIFT, simulate
    from trunkline.flows.stats import Quarter

    monkeypatch.setenv("TRUNKLINE_ENRICH_DATA", str(shared_data / "enrich"))
    aws_env.create_bucket("lake-compact")
    lake, local = "s3://lake-compact/c", str(tmp_path / "local")
    e = Enricher.from_dir(shared_data / "enrich")
    q = Quarter(2025, 4)
    for loc in (lake, local):
        store = FlowStore(loc, rollups=Rollups(e))
        simulate(q.prev(), store, e, 1500, 7, 0.5, PREVIOUS_SHIFT, batch=500)
        simulate(q, store, e, 3000, 7, batch=500)
    s3, loc = FlowStore(lake), FlowStore(local)
    assert not s3.files(rollup.MONTHLY)
    p = scan.plan(s3, e, q.prev().start, q.end)
    assert p.why == "" and p.monthly == []  # the rollups cover it, day by day
    out = json.loads(_run("flows", "rollup", "--store", lake, "--compact", "--json").output)
    assert out["rows"]["after"] < out["rows"]["before"]  # merged files replaced the batches'
    keys = _keys(aws_env, "lake-compact", "c/rollup=")
    months = sorted(k.split("/")[2] for k in keys if k.startswith("c/rollup=peers_1mo/"))
    assert months[:6] == [f"day=2025-{m:02d}-01" for m in range(7, 13)]
    assert len(months) == out["rows"]["months"]  # one table per month
    for level in rollup.INGEST_TABLES:  # one file per day and level
        days = [f.parent for f in s3.files(level)]
        assert len(days) == len(set(days)), level
    maintain.compact(loc, scan.raw_days(loc))
    p = scan.plan(s3, e, q.prev().start, q.end)
    assert p.why == "" and p.monthly == [*q.prev().months(), *q.months()]
    reports = {}
    for name, store in (("s3", lake), ("local", local)):
        rep_dir = tmp_path / f"rep-{name}"
        t0 = time.perf_counter()
        _run("flows", "report", "--store", store, "--quarter", "2025Q4", "--out", str(rep_dir))
        print(f"report from the {name} store (compacted): {time.perf_counter() - t0:.2f} s")
        rep = json.loads((rep_dir / "report.json").read_text())
        rep.pop("generated_at", None)
        reports[name + "-source"] = rep.pop("source")
        reports[name] = rep
    assert reports["s3-source"] == reports["local-source"]
    assert reports["s3-source"]["kind"] == "rollups"
    assert reports["s3"]["totals"]["flows"] == 3000
    assert _differences(reports["s3"], reports["local"]) == []


WRITER = textwrap.dedent("""
    import sys
    import pyarrow as pa
    from datetime import UTC, datetime
    from trunkline.flows.store import FlowStore
    k, n_batches, per = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    store = FlowStore(sys.argv[4])
    t0 = int(datetime(2025, 11, 3, tzinfo=UTC).timestamp() * 1000)
    for b in range(n_batches):
        first = (k * n_batches + b) * per
        ids = pa.array(range(first, first + per), pa.uint64())
        ts = pa.array([t0 + (i % 2) * 86_400_000 + i for i in range(first, first + per)],
                      pa.timestamp("ms", tz="UTC"))
        assert store.write(pa.table({"time_start": ts, "time_end": ts, "bytes": ids})) == per
    print("ok")
""")


@pytest.mark.timeout(300)
def test_writers_in_two_processes_share_a_prefix_and_lose_nothing(aws_env, tmp_path):
    aws_env.create_bucket("lake-writers")
    lake = "s3://lake-writers/shared"
    n_batches, per = 12, 3000
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(k), str(n_batches), str(per),
                               lake], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for k in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0 and out.strip() == "ok", err
    keys = _keys(aws_env, "lake-writers", "shared/")
    # each batch spans two days: two files per batch and writer, none overwritten
    assert len(keys) == 2 * n_batches * 2
    pids = {k.rsplit("/", 1)[1].split("-")[-2] for k in keys}
    assert len(pids) == 2
    store = FlowStore(lake)
    t = store.query("SELECT count(*) AS n, count(DISTINCT bytes) AS d, min(bytes) AS lo, "
                    "max(bytes) AS hi FROM flows")
    total = 2 * n_batches * per
    assert t.to_pylist() == [{"n": total, "d": total, "lo": 0, "hi": total - 1}]


@pytest.mark.timeout(300)
def test_gc_per_level_on_s3(aws_env, tmp_path):
    aws_env.create_bucket("lake-gc")
    lake = "s3://lake-gc/p"
    store = FlowStore(lake)
    days = ["2025-09-01", "2025-09-30", "2025-10-01", "2025-11-20", "2025-11-29"]
    for d in days:
        store.write(_flows(10, d))
        for level in ("5m", "1h"):
            store._write_file(store.root / f"rollup={level}" / f"day={d}", _flows(2, d))
    # one quarantined batch (a time past 9999 is always quarantined)
    bad = pa.table({"time_start": pa.array([2**62], pa.timestamp("ms", tz="UTC")),
                    "time_end": pa.array([2**62], pa.timestamp("ms", tz="UTC"))})
    store.write(bad)
    _put(aws_env, "lake-gc", "p/day=2025-09-01/not-ours.txt", b"left alone")
    before = _keys(aws_env, "lake-gc", "p/")
    now = "2025-12-01T06:00:00Z"
    r = _run("flows", "gc", "--store", lake, "--keep", "raw=14d,5m=61d,1h=forever",
             "--now", now, "--dry-run", "--json")
    plan = {lv["level"]: lv for lv in json.loads(r.output)["levels"]}
    assert _keys(aws_env, "lake-gc", "p/") == before  # a dry run deletes nothing
    # raw: days ending before Nov 17 06:00 go (Sep 1, Sep 30, Oct 1); 5m: before Oct 1 06:00
    assert (plan["raw"]["partitions_deleted"], plan["5m"]["partitions_deleted"]) == (3, 2)
    assert plan["1h"]["files_deleted"] == 0 and plan["quarantine"]["keep"] is None
    _run("flows", "gc", "--store", lake, "--keep", "raw=14d,5m=61d,1h=forever",
         "--now", now)
    after = _keys(aws_env, "lake-gc", "p/")
    gone = set(before) - set(after)
    want_gone = {k for k in before if k.endswith(".parquet") and (
        any(k.startswith(f"p/day={d}/") for d in days[:3])
        or any(k.startswith(f"p/rollup=5m/day={d}/") for d in days[:2]))}
    assert gone == want_gone and len(gone) == 5
    assert "p/day=2025-09-01/not-ours.txt" in after
    assert sum(k.startswith("p/rollup=1h/") for k in after) == 5
    assert store.query("SELECT count(*) AS n FROM flows").column("n")[0].as_py() == 20
    # the quarantine by write time: it was written just now, so 0 days old today
    r = _run("flows", "gc", "--store", lake, "--keep", "quarantine=1d", "--json")
    assert json.loads(r.output)["levels"][0]["files_deleted"] == 0
    assert store.quarantine().num_rows == 1


@pytest.mark.timeout(300)
def test_hostile_listing_is_skipped_and_counted(aws_env, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TRUNKLINE_ENRICH_DATA", str(shared_data / "enrich"))
    aws_env.create_bucket("lake-hostile")
    lake = "s3://lake-hostile/h"
    _run("flows", "simulate", "--quarter", "2025Q4", "--out", lake, "--flows", "5000",
         "--no-previous")
    good = len([k for k in _keys(aws_env, "lake-hostile", "h/") if k.startswith("h/day=")])
    hostile = {
        "h/day=2025-10-02/zero.parquet": b"",                               # too_small
        "h/day=2025-10-02/garbage.parquet": b"PAR1" + os.urandom(300),       # unreadable
        "h/day=2025-10-03/wrong.parquet": _parquet(pa.table({"time_start": ["x"]})),  # schema
        "h/day=2025-19-03/x.parquet": _parquet(_flows(3, "2025-10-03")),     # bad_day
        "h/README.md": b"not ours",                                         # foreign
        "h/day=2025-10-02/sub/deep.parquet": _parquet(_flows(3, "2025-10-02")),  # foreign
    }
    for k, v in hostile.items():
        _put(aws_env, "lake-hostile", k, v)
    out = tmp_path / "rep"
    r = _run("flows", "report", "--store", lake, "--quarter", "2025Q4", "--out", str(out))
    assert "warning: 6 key(s)" in r.output, r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["totals"]["flows"] == 5000
    store = FlowStore(lake)
    assert store.query("SELECT count(*) AS n FROM flows").column("n")[0].as_py() == 5000
    assert dict(store.skipped) == {"too_small": 1, "unreadable": 1, "schema": 1,
                                   "bad_day": 1, "foreign": 2}
    assert len(store.files()) == good + 2  # garbage and wrong: ours by name, then refused


def test_a_listing_with_escaping_keys_is_skipped_and_counted(tmp_path, monkeypatch):
    """Keys no real store lists for us on demand (``..``, empty components): a server that
    lists them (HostileS3, in front of nothing) holding an otherwise valid lake."""
    from trunkline.testing.hostile_s3 import HostileS3

    local = FlowStore(tmp_path / "src")
    local.write(_flows(40, "2025-11-03"))
    local.write(_flows(60, "2025-11-04", first=100))
    one = local.files()[0]
    with HostileS3() as srv:
        for p in local.files():
            srv.put("lk", f"h/{p.parent.name}/{p.name}", p.read_bytes())
        for evil in ("h/day=2025-11-03/../day=2025-11-04/evil.parquet",
                     "h/day=2025-11-03/./x.parquet", "h/day=2025-11-03//x.parquet",
                     "h/../h/day=2025-11-03/x.parquet", "h/day=2025-11-03/a\\b.parquet"):
            srv.put("lk", evil, one.read_bytes())
        for k, v in {**srv.env, "TRUNKLINE_CONFIG": "/nonexistent"}.items():
            monkeypatch.setenv(k, v)
        store = FlowStore("s3://lk/h")
        t = store.query("SELECT count(*) AS n, sum(bytes) AS b FROM flows")
        assert t.to_pylist() == [{"n": 100, "b": sum(range(40)) + sum(range(100, 160))}]
        assert dict(store.skipped) == {"unsafe": 5}


@pytest.mark.timeout(120)
def test_collect_with_two_workers_and_ingest_into_s3(aws_env, shared_data, tmp_path):
    """The collector forks its workers after making the store: each opens S3 itself (the
    AWS SDK must not be initialised before a fork). Its status lives on this host."""
    import signal
    import socket
    import time

    from trunkline.flows.decode import FlowDecoder
    from trunkline.flows.sources.pcap import read_udp

    aws_env.create_bucket("lake-collect")
    lake = "s3://lake-collect/edge"
    nf = shared_data / "flows/netflow"
    payloads = [d.payload for f in ("samplingrate-template.pcap", "samplingrate-data.pcap")
                for d in read_udp(nf / f)]
    dec = FlowDecoder()
    for p in payloads:
        dec.feed(p, "x")
    per_exporter = dec.flush().num_rows
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "trunkline.cli.main", "flows", "collect",
                             "--store", lake, "--listen", f"127.0.0.1:{port}",
                             "--flush-interval", "60", "--workers", "2"],
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    exporters = [f"127.0.0.{i}" for i in range(2, 8)]
    try:
        assert "with 2 workers" in proc.stderr.readline()
        for src in exporters:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                tx.bind((src, 0))
                for p in payloads:
                    tx.sendto(p, ("127.0.0.1", port))
                    time.sleep(0.01)
        time.sleep(2.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    got = FlowStore(lake).query("SELECT exporter, count(*) AS n FROM flows GROUP BY 1")
    assert dict(zip(*got.to_pydict().values(), strict=True)) == {
        e: per_exporter for e in exporters}
    st = json.loads(_run("flows", "status", "--store", lake, "--json").output)
    assert st["collector"]["written_records"] == per_exporter * len(exporters)
    assert st["store"]["records"] == per_exporter * len(exporters)
    # ingest of captures into the same prefix, beside the collector's files
    files = [nf / "nfv5.pcap", nf / "template.pcap", nf / "data.pcap"]
    out = _run("flows", "ingest", *map(str, files), "--store", lake).output
    n = int(out.split()[0])
    assert n > 0
    total = FlowStore(lake).query("SELECT count(*) AS n FROM flows").column("n")[0].as_py()
    assert total == per_exporter * len(exporters) + n


def test_a_batch_is_stored_whole_or_not_at_all_when_the_disk_fills(tmp_path):
    """A batch of two days whose second day file meets a full disk: the first day's file
    is removed again and the batch comes back as ``BatchNotStored`` counting every record
    (a collector adds them to its lost records): never half a batch in the lake and the
    whole of it counted lost. With room again it is stored whole."""
    import numpy as np

    from conftest import mounted_tmpfs
    from trunkline.errors import BatchNotStored
    from trunkline.flows import lake as lk

    rng = np.random.default_rng(7)
    n = 20_000

    def day(d: str) -> pa.Table:
        t = _flows(n, d)
        return t.set_column(2, "bytes", pa.array(rng.integers(0, 2**63, n, dtype=np.uint64)))

    batch = pa.concat_tables([day("2025-10-01"), day("2025-10-02")])
    scratch = FlowStore(tmp_path / "scratch")   # what each day's file takes on disk
    scratch.write(batch)
    first, second = (os.path.getsize(p) for p in sorted(map(str, scratch.files())))
    with mounted_tmpfs(tmp_path / "disk", "2m") as mnt:
        store = FlowStore(mnt / "store")
        (mnt / "store").mkdir(exist_ok=True)
        st = os.statvfs(mnt)
        room = first + second // 2   # the first day's file fits, the second does not
        with open(mnt / "filler", "wb") as f:
            f.write(b"\0" * (st.f_bavail * st.f_frsize - room))
        with pytest.raises(BatchNotStored) as e:
            store.write(batch)
        assert e.value.lost == 2 * n and isinstance(e.value.cause, OSError)
        assert store.files() == []
        assert not [p for p in (mnt / "store").rglob("*") if p.is_file()
                    and p.name.endswith(".parquet")], "a day of the batch was left behind"
        assert lk.list_lake(store.lake).data() == []
        (mnt / "filler").unlink()
        assert store.write(batch) == 2 * n
        assert sum(pq.ParquetFile(p).metadata.num_rows for p in store.files()) == 2 * n
