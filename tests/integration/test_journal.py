"""The resume journal: persistence, concurrency, source changes, and kill -9 durability."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import fill_disk, mounted_tmpfs
from trunkline.engine.journal import (
    Journal,
    PartRecord,
    default_state_dir,
    journal_id,
    list_journals,
)

MiB = 1024 * 1024
OPTS = {"part_size": 8 * MiB, "checksum": "crc32c"}


def test_journal_id_is_canonical():
    a = journal_id("s3://a/x", "/data", {"part_size": 1, "z": [1, 2]})
    assert a == journal_id("s3://a/x", "/data", {"z": [1, 2], "part_size": 1})
    assert a != journal_id("s3://a/x", "/data", {"part_size": 2, "z": [1, 2]})
    assert a != journal_id("s3://a/x", "/data2", {"part_size": 1, "z": [1, 2]})
    assert len(a) == 64 and int(a, 16) >= 0


def test_default_state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TRUNKLINE_STATE_DIR", str(tmp_path / "s"))
    assert default_state_dir() == tmp_path / "s"
    monkeypatch.delenv("TRUNKLINE_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "x"))
    assert default_state_dir() == tmp_path / "x" / "trunkline"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert default_state_dir() == tmp_path / "h" / ".local" / "state" / "trunkline"


def test_roundtrip_resume_and_listing(tmp_path):
    j = Journal.open(tmp_path, "s3://b/p/", "/dst/", OPTS)
    assert j.path == tmp_path / f"{journal_id('s3://b/p/', '/dst/', OPTS)}.sqlite"
    o = j.object("p/a", "/dst/a", 20 * MiB, '"e-3"', None, 8 * MiB)
    assert (o.upload_id, o.done, o.restarted) == (None, False, False)
    j.set_upload_id(o.id, "up-1")
    j.part_done(o.id, 1, 0, 8 * MiB, 0xDEADBEEF, '"p1"')
    j.part_done(o.id, 2, 8 * MiB, 8 * MiB, 0x12345678)
    small = j.object("p/b", "/dst/b", 100, '"m"', None, 8 * MiB)
    j.part_done(small.id, 1, 0, 100, 7)
    j.object_done(small.id, 7)
    j.close()

    j = Journal.open(tmp_path, "s3://b/p/", "/dst/", OPTS)
    again = j.object("p/a", "/dst/a", 20 * MiB, '"e-3"', None, 8 * MiB)
    assert again.id == o.id and again.upload_id == "up-1" and not again.done
    assert j.parts(o.id) == {
        1: PartRecord(1, 0, 8 * MiB, 0xDEADBEEF, '"p1"'),
        2: PartRecord(2, 8 * MiB, 8 * MiB, 0x12345678, None),
    }
    assert j.is_done("p/b") and not j.is_done("p/a") and not j.is_done("nope")
    assert j.object("p/b", "/dst/b", 100, '"m"', None, 8 * MiB).done
    assert [(u.obj_id, u.key, u.upload_id) for u in j.pending_uploads()] == [(o.id, "p/a", "up-1")]
    st = j.stats()
    assert (st["objects"], st["done"], st["parts"]) == (2, 1, 3)
    assert st["bytes_done"] == 100 + 16 * MiB
    j.forget_parts(o.id, [2])
    assert list(j.parts(o.id)) == [1]

    infos = list_journals(tmp_path)
    assert len(infos) == 1
    info = infos[0]
    assert (info.src, info.dst, info.options) == ("s3://b/p/", "/dst/", OPTS)
    assert (info.objects, info.done, info.pending_uploads) == (2, 1, 1)
    assert info.bytes_done == 100 + 8 * MiB and info.updated >= info.created
    j.remove()
    assert list_journals(tmp_path) == [] and not list(tmp_path.iterdir())


def test_changed_source_discards_parts(tmp_path):
    with Journal.open(tmp_path, "/src", "s3://b/", OPTS) as j:
        o = j.object("f", "s3://b/f", 30 * MiB, None, 1000.5, 8 * MiB)
        j.set_upload_id(o.id, "old-upload")
        for n in range(1, 4):
            j.part_done(o.id, n, (n - 1) * 8 * MiB, 8 * MiB, n)
        same = j.object("f", "s3://b/f", 30 * MiB, None, 1000.5, 8 * MiB)
        assert len(j.parts(same.id)) == 3 and not same.restarted

        grown = j.object("f", "s3://b/f", 31 * MiB, None, 1000.5, 8 * MiB)
        assert grown.id == o.id and grown.restarted and grown.upload_id is None
        assert grown.discarded_upload_id == "old-upload"
        assert j.parts(o.id) == {} and j.pending_uploads() == []
        assert [u.upload_id for u in j.discarded_uploads()] == ["old-upload"]
        assert list_journals(tmp_path)[0].pending_uploads == 1
        j.forget_upload("old-upload")
        assert j.discarded_uploads() == []

        j.part_done(o.id, 1, 0, 8 * MiB, 9)
        j.object_done(o.id, 9)
        touched = j.object("f", "s3://b/f", 31 * MiB, None, 2000.0, 8 * MiB)  # mtime only
        assert touched.restarted and not touched.done and j.parts(o.id) == {}
        assert touched.discarded_upload_id is None  # a done object's upload is complete
        relaid = j.object("f", "s3://b/f", 31 * MiB, None, 2000.0, 16 * MiB)  # part size
        assert relaid.restarted


def test_local_names_that_are_not_utf8(tmp_path):
    """A local path is any bytes (Python holds them as ``surrogateescape`` text, which
    SQLite's text refuses): the journal keeps such a name as its bytes, finds it again,
    gives it back unchanged, and never confuses it with a UTF-8 name that looks alike."""
    src, dst = os.fsdecode(b"/data/caf\xe9/"), "s3://b/cafe/"
    name, lookalike = os.fsdecode(b"/data/caf\xe9/x"), "/data/caf\u00e9/x"   # Latin-1, UTF-8
    jid = journal_id(src, dst, OPTS)
    assert jid != journal_id("/data/caf\u00e9/", dst, OPTS)
    with Journal.open(tmp_path, src, dst, OPTS) as j:
        o = j.object(name, "s3://b/cafe/x", 20 * MiB, None, 5.0, 8 * MiB)
        j.set_upload_id(o.id, "up-9")
        j.part_done(o.id, 1, 0, 8 * MiB, 1)
        d = j.object("s3://b/k", os.fsdecode(b"/down/\xff"), 3, '"e"', None, 8 * MiB)
        assert j.unfinished_dsts() == [os.fsdecode(b"/down/\xff")]
        j.object_done(d.id, 5)
        j.done_many([(os.fsdecode(b"/data/caf\xe9/small"), "s3://b/cafe/small", 1, None,
                      6.0, 8 * MiB)])
        assert j.meta()["src"] == src
    with Journal.open(tmp_path, src, dst, OPTS) as j:
        again = j.object(name, "s3://b/cafe/x", 20 * MiB, None, 5.0, 8 * MiB)
        assert again.id == o.id and again.upload_id == "up-9" and list(j.parts(o.id)) == [1]
        assert not j.is_done(lookalike) and j.recorded_part_size(lookalike) is None
        assert j.recorded_part_size(name) == 8 * MiB
        assert [(u.key, u.upload_id) for u in j.pending_uploads()] == [(name, "up-9")]
        assert j.done_record("s3://b/k") == (os.fsdecode(b"/down/\xff"), 3, '"e"', None)
        assert j.is_done(os.fsdecode(b"/data/caf\xe9/small"))
        moved = j.object(name, "s3://b/cafe/x", 21 * MiB, None, 5.0, 8 * MiB)
        assert moved.restarted and [(u.key, u.upload_id) for u in j.discarded_uploads()] == [
            (name, "up-9")]
    [info] = list_journals(tmp_path)
    assert (info.id, info.src, info.dst) == (jid, src, dst)
    with sqlite3.connect(info.path) as con:   # UTF-8 names stay text, as before
        kinds = dict(con.execute("SELECT dst, typeof(key) FROM objects"))
    assert kinds == {"s3://b/cafe/x": "blob", b"/down/\xff": "text",
                     "s3://b/cafe/small": "blob"}


def test_fresh_starts_over(tmp_path):
    with Journal.open(tmp_path, "a", "b", {}) as j:
        j.object_done(j.object("k", "b/k", 1, None, None, 1).id, 0)
    with Journal.fresh(tmp_path, "a", "b", {}) as j:
        assert j.stats()["objects"] == 0 and not j.is_done("k")


def test_concurrent_part_done_and_rate(tmp_path):
    """16 workers recording parts at once; all land; report commits per second."""
    j = Journal.open(tmp_path, "s3://b/", "/d/", OPTS)
    objs = [j.object(f"k{i}", f"/d/k{i}", 10**12, None, None, MiB).id for i in range(16)]
    per_thread = 250
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def work(oid: int) -> None:
        try:
            start.wait()
            for n in range(1, per_thread + 1):
                j.part_done(oid, n, (n - 1) * MiB, MiB, (oid * 1_000_003 + n) & 0xFFFFFFFF)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(oid,)) for oid in objs]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    assert not errors
    total = 16 * per_thread
    print(
        f"\njournal part_done: {total} commits from 16 threads in {dt:.3f}s = {total / dt:,.0f}/s"
    )
    for oid in objs:
        parts = j.parts(oid)
        assert sorted(parts) == list(range(1, per_thread + 1))
        assert all(p.crc32c == (oid * 1_000_003 + n) & 0xFFFFFFFF for n, p in parts.items())
    assert j.stats()["parts"] == total
    j.close()


_CHILD = textwrap.dedent(
    """
    import sys, threading
    from trunkline.engine.journal import Journal
    j = Journal.open(sys.argv[1], "s3://src/", "/dst/", {"part_size": 1})
    o = j.object("big", "/dst/big", 1 << 50, '"x-9999"', None, 1 << 20)
    start = 1 + max(j.parts(o.id), default=0)
    out = threading.Lock()
    counter = iter(range(start, 1 << 30))
    take = threading.Lock()

    def worker():
        while True:
            with take:
                n = next(counter)
            j.part_done(o.id, n, (n - 1) << 20, 1 << 20, n * 2654435761 & 0xFFFFFFFF)
            with out:  # only after part_done returned
                sys.stdout.write(f"{n}\\n")
                sys.stdout.flush()

    for _ in range(4):
        threading.Thread(target=worker, daemon=True).start()
    threading.Event().wait()
    """
)


def test_kill9_loses_no_committed_part(tmp_path):
    """SIGKILL a recording child at random points; every part it reported is there."""
    rng = random.Random(0xC0FFEE)
    reported: set[int] = set()
    for _round in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        target = rng.randint(50, 600)
        seen = 0
        deadline = time.monotonic() + 20
        while seen < target and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            reported.add(int(line))
            seen += 1
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()  # whatever was printed before the kill
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        for line in rest.split(b"\n")[:-1]:  # a trailing partial line is not a report
            reported.add(int(line))
        assert seen >= target, "child produced too few parts before the deadline"

        with Journal.open(tmp_path, "s3://src/", "/dst/", {"part_size": 1}) as j:
            o = j.object("big", "/dst/big", 1 << 50, '"x-9999"', None, 1 << 20)
            parts = j.parts(o.id)
            missing = reported - parts.keys()
            assert not missing, f"parts reported done but lost: {sorted(missing)[:10]}"
            assert all(parts[n].crc32c == n * 2654435761 & 0xFFFFFFFF for n in reported)
    path = next(tmp_path.glob("*.sqlite"))
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_closed_journal_refuses(tmp_path):
    j = Journal.open(tmp_path, "a", "b", {})
    j.close()
    with pytest.raises(ValueError):
        j.stats()
    j.close()  # idempotent
    assert list_journals(Path(tmp_path) / "missing") == []


def test_lookups_per_object_see_what_earlier_runs_recorded(tmp_path):
    """``done_record`` and ``recorded_part_size`` answer from the journal as it was when
    opened (a fresh journal answers without a query); a reopened journal finds an earlier
    run's unfinished object's part size and its finished small objects."""
    j = Journal.open(tmp_path, "s3://b/p/", "/d/", OPTS)
    assert j.recorded_part_size("s3://b/p/big") is None
    assert j.done_record("s3://b/p/small") is None
    j.object("s3://b/p/big", "/d/big", 100 * MiB, '"e1"', 1.0, 24 * MiB)
    j.done_many([("s3://b/p/small", "/d/small", 10, '"e2"', 2.0, 8 * MiB)])
    j.close()
    j = Journal.open(tmp_path, "s3://b/p/", "/d/", OPTS)
    try:
        assert j.recorded_part_size("s3://b/p/big") == 24 * MiB   # a resume keeps it
        assert j.recorded_part_size("s3://b/p/other") is None
        assert j.done_record("s3://b/p/small") == ("/d/small", 10, '"e2"', 2.0)
        assert j.done_record("s3://b/p/big") is None              # started, not done
    finally:
        j.close()
    j = Journal.fresh(tmp_path, "s3://b/p/", "/d/", OPTS)
    try:
        assert j.recorded_part_size("s3://b/p/big") is None
        assert j.done_record("s3://b/p/small") is None
    finally:
        j.close()


def test_a_full_disk_under_the_journal_is_a_clear_enospc(tmp_path):
    """The disk of the state dir fills: the write fails as OSError(ENOSPC) naming the
    journal (SQLite rolled back by itself, and a second ROLLBACK used to raise "cannot
    rollback - no transaction is active" over it), and what was committed before stays."""
    import errno as errno_

    with mounted_tmpfs(tmp_path / "tiny", "512k") as mnt:
        j = Journal.open(mnt, "s3://b/p/", "/d/", OPTS)
        j.done_many([("s3://b/p/first", "/d/first", 1, '"e"', 1.0, MiB)])
        fill_disk(mnt)
        rows = [(f"s3://b/p/{'k' * 200}{i}", f"/d/{i}", 1, '"e"', 1.0, MiB) for i in range(5000)]
        with pytest.raises(OSError) as e:
            j.done_many(rows)
        assert e.value.errno == errno_.ENOSPC and "resume journal" in str(e.value)
        (mnt / "filler").unlink()
        j.done_many([("s3://b/p/after", "/d/after", 1, '"e"', 1.0, MiB)])   # space again
        j.close()
        j = Journal.open(mnt, "s3://b/p/", "/d/", OPTS)
        assert j.done_record("s3://b/p/first") == ("/d/first", 1, '"e"', 1.0)
        assert j.done_record("s3://b/p/after") == ("/d/after", 1, '"e"', 1.0)
        assert j.done_record(rows[0][0]) is None                  # the failed batch: none of it
        j.close()


def _objects(srv, bucket: str, n: int, size: int) -> dict[str, bytes]:
    srv.create_bucket(bucket)
    c = srv.client()
    blob = os.urandom(size)
    objs = {f"{i:03d}.bin": blob[i:] + blob[:i] for i in range(n)}
    for k, v in objs.items():
        c.put_object(Bucket=bucket, Key=f"d/{k}", Body=v)
    return objs


def test_a_full_state_disk_at_the_start_is_one_line_exit_1(s3server, tmp_path):
    """The state dir's disk is full before the journal exists: one line names it (no
    driver's traceback), exit 1, nothing at the destination; with room again, a rerun
    copies every object byte for byte."""
    objs = _objects(s3server, "full-state-start", 5, 100_000)
    env = {**os.environ, **s3server.env, "TRUNKLINE_CONFIG": "/nonexistent/trunkline.toml"}
    exe = str(Path(sys.executable).with_name("trunkline"))
    dst = tmp_path / "dst"
    with mounted_tmpfs(tmp_path / "state", "256k") as mnt:
        fill_disk(mnt)
        env["TRUNKLINE_STATE_DIR"] = str(mnt)
        p = subprocess.run([exe, "cp", "-r", "s3://full-state-start/d/", f"{dst}/"], env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 1, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            "trunkline: error: [Errno 28] no space left for the resume journal"), p.stderr
        assert not dst.exists() or not any(dst.iterdir())
        (mnt / "filler").unlink()
        p = subprocess.run([exe, "cp", "-r", "s3://full-state-start/d/", f"{dst}/"], env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
    assert {f.name: f.read_bytes() for f in dst.iterdir()} == objs


def test_a_state_disk_that_fills_mid_run_stops_it_with_one_error(s3server, tmp_path,
                                                                  monkeypatch):
    """The state dir's disk fills while parts are being journaled by the workers: the run
    stops and raises ENOSPC naming the journal, once, where the caller sees it. No worker
    thread dies with a traceback, and the run ends though its lister still had parts to
    queue (120 parts, a queue of 64: a worker that died alone used to leave the lister
    waiting on the full queue for ever). What is at a final name is byte-identical; with
    room again, a rerun finishes the rest."""
    import errno as errno_

    import trunkline
    from conftest import point_env_at

    point_env_at(s3server, monkeypatch)
    objs = _objects(s3server, "full-state-mid", 40, 11 * MiB)
    died: list[str] = []
    monkeypatch.setattr(threading, "excepthook",
                        lambda a: died.append(f"{a.thread}: {a.exc_value!r}"))
    dst = tmp_path / "dst"
    with mounted_tmpfs(tmp_path / "state", "2m") as mnt:
        filled: list[bool] = []

        def fill_once(s) -> None:
            if s.done_bytes and not filled:
                fill_disk(mnt)
                filled.append(True)

        out: list[BaseException | object] = []

        def run() -> None:
            try:
                out.append(trunkline.copy("s3://full-state-mid/d/", f"{dst}/", recursive=True,
                                          part_size="5M", max_connections=4, state_dir=str(mnt),
                                          on_progress=fill_once, bwlimit="200M"))
            except BaseException as e:  # noqa: BLE001 - the test looks at it
                out.append(e)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(timeout=120)
        assert not t.is_alive(), "the run never ended"
        assert filled, f"the disk was never filled: the test proved nothing ({out})"
        assert isinstance(out[0], OSError) and out[0].errno == errno_.ENOSPC, out
        assert "resume journal" in str(out[0])
        assert died == []
        finished = {f.name: f.read_bytes() for f in dst.iterdir() if f.name in objs}
        assert all(v == objs[k] for k, v in finished.items())
        assert len(finished) < len(objs), "it all finished before the disk filled"
        (mnt / "filler").unlink()
        r = trunkline.copy("s3://full-state-mid/d/", f"{dst}/", recursive=True, part_size="5M",
                           state_dir=str(mnt))
        assert r.ok, r.failures
    assert {f.name: f.read_bytes() for f in dst.iterdir()} == objs


def test_a_full_disk_under_the_listing_index_is_a_clear_enospc(tmp_path):
    """The merge's index of names waiting for a partner spills past its page cache into
    SQLite's temporary directory; when that disk is full, the error names the index and
    the directory as ENOSPC (the CLI's one line, exit 1), not a driver's exception that
    the CLI shows as a bug. (A child process: SQLite reads $SQLITE_TMPDIR once.)"""
    probe = textwrap.dedent("""
        import errno, sys
        from trunkline.engine import listing
        idx = listing._Index(lambda rel, size, mtime, etag: listing.Entry(rel, size, mtime,
                                                                          etag, None))
        idx.con.execute("PRAGMA cache_size=8")    # spill at once, not past 16 MiB
        try:
            for n in range(50):
                idx.add([listing.Entry(f"k/{n:02d}/{i:05d}{'x' * 100}", i, None, None, None)
                         for i in range(2000)])
        except OSError as e:
            print(e.errno == errno.ENOSPC, e)
            sys.exit(0)
        print("no error")
    """)
    with mounted_tmpfs(tmp_path / "tmp", "256k") as mnt:
        fill_disk(mnt)
        p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           env={**os.environ, "SQLITE_TMPDIR": str(mnt)}, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"True [Errno 28] no space left for the listing index in {mnt}"), \
        p.stdout
