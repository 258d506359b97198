"""A wrong byte never lands: the mover against a hostile S3 server on loopback.

Each case ends in a byte-identical copy or a clear failure (listed as failed, exit 1)
with nothing at the final name. The server (trunkline.testing.hostile_s3) misbehaves in
one named mode at a time; ``times=1`` shows that a retry on a fresh connection heals a
transient fault, ``times=None`` that a persistent one fails cleanly.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import google_crc32c
import pytest

import trunkline
from conftest import CHECKSUM_ALGOS, mounted_tmpfs, stored_checksum
from trunkline import sync
from trunkline.engine.jobs import EndpointCache
from trunkline.engine.plan import MiB
from trunkline.storage.partial import is_partial_name, partial_name
from trunkline.storage.s3 import ListingError
from trunkline.testing.hostile_s3 import HostileS3

BIG = 12 * MiB + 12345      # three 5 MiB ranged parts (the last one short)
PS = "5MiB"


@pytest.fixture
def hostile(monkeypatch):
    with HostileS3(trickle_pause=0.0) as s:
        for k, v in s.env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("TRUNKLINE_CONFIG", "/nonexistent/trunkline.toml")
        yield s


def _data(n: int, seed: int = 1) -> bytes:
    return hashlib.shake_256(b"%d" % seed).digest(n)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file() and not is_partial_name(p.name)}


def _cp(src: str, dst: Path, **kw):
    kw = {"part_size": PS, "retries": 2, "read_timeout": 2, **kw}
    return trunkline.copy(src, str(dst) + "/", recursive=True, **kw)


TRANSIENT = ["wrong_range", "ignored_range", "te_cl", "long_body", "short_body", "info_1xx"]


@pytest.mark.parametrize("mode", TRANSIENT + ["slow_trickle"])
def test_transient_misbehaviour_heals_byte_identical(hostile, tmp_path, mode):
    big, small = _data(BIG), _data(1000, 2)
    hostile.put("b", "d/big.bin", big)
    want = {"big.bin": big}
    if mode == "slow_trickle":   # pauses longer than the read timeout: retried afresh
        hostile.trickle_pause, hostile.trickle_piece = 2.5, 256 * 1024
    else:
        hostile.put("b", "d/small.bin", small)
        want["small.bin"] = small
    hostile.set_mode(mode, times=1)
    r = _cp("s3://b/d/", tmp_path, read_timeout=1 if mode == "slow_trickle" else 2)
    assert hostile.struck == 1, "the fault never struck: the test proves nothing"
    assert r.ok, r.failures
    if mode != "info_1xx":
        assert r.retries >= 1
    assert _files(tmp_path) == want
    assert not [p for p in tmp_path.iterdir() if is_partial_name(p.name)]


@pytest.mark.parametrize("mode", ["wrong_range", "ignored_range", "te_cl", "long_body",
                                  "short_body"])
def test_persistent_misbehaviour_fails_with_nothing_at_the_final_name(hostile, tmp_path,
                                                                       mode):
    hostile.put("b", "d/big.bin", _data(BIG))
    hostile.set_mode(mode)
    r = _cp("s3://b/d/", tmp_path, retries=1)
    assert not r.ok
    assert [f.name for f in r.failures] == ["s3://b/d/big.bin"]
    assert "gave up after 2 tries" in r.failures[0].error
    assert not (tmp_path / "big.bin").exists()
    assert r.objects == 0


def test_interim_1xx_answers_are_always_skipped(hostile, tmp_path):
    hostile.put("b", "x.bin", _data(3000))
    hostile.set_mode("info_1xx")
    r = trunkline.copy("s3://b/x.bin", str(tmp_path / "x.bin"), retries=0)
    assert r.ok, r.failures
    assert hostile.struck >= 1
    assert (tmp_path / "x.bin").read_bytes() == _data(3000)


def test_object_replaced_mid_download_fails_then_rerun_gets_the_new_one(hostile, tmp_path):
    old, new = _data(BIG, 1), _data(BIG, 9)   # same size: only the ETag tells them apart
    hostile.put("b", "o.bin", old)
    hostile.set_mode("change_mid_object")
    hostile.replacement = new
    r = trunkline.copy("s3://b/o.bin", str(tmp_path / "o.bin"), part_size=PS, connections=1)
    assert not r.ok and "source changed" in r.failures[0].error, r.failures
    assert not (tmp_path / "o.bin").exists()
    assert any("If-Match" in x or "GET" in x for x in hostile.requests)
    hostile.set_mode("normal")
    r = trunkline.copy("s3://b/o.bin", str(tmp_path / "o.bin"), part_size=PS, connections=1)
    assert r.ok, r.failures
    assert (tmp_path / "o.bin").read_bytes() == new


@pytest.mark.parametrize("mode", ["repeat_token", "missing_token", "repeat_key"])
def test_listing_that_does_not_end_normally_is_an_error(hostile, tmp_path, mode):
    hostile.page_size = 2
    for i in range(5):
        hostile.put("b", f"p/k{i}", b"x%d" % i)
    hostile.set_mode(mode)
    t0 = time.monotonic()
    with pytest.raises(ListingError):
        _cp("s3://b/p/", tmp_path)
    assert time.monotonic() - t0 < 30
    assert len(hostile.requests) < 20, "the listing looped"


@pytest.mark.parametrize("mode", ["repeat_token", "missing_token", "repeat_key"])
def test_sync_delete_acts_only_on_a_listing_that_ended(hostile, tmp_path, mode):
    hostile.page_size = 2
    for i in range(5):
        hostile.put("b", f"p/k{i}", b"x%d" % i)
    dst = tmp_path / "dst"
    assert sync("s3://b/p/", str(dst), delete=True).ok
    before = _files(dst)
    assert len(before) == 5
    hostile.set_mode(mode)
    with pytest.raises(ListingError):
        sync("s3://b/p/", str(dst), delete=True)
    assert _files(dst) == before, "files the source still holds were deleted"


@pytest.mark.parametrize("mode,bad", [("foreign_key", None), ("bad_size", None),
                                      ("bad_size", "-1"), ("bad_size", "1_0"),
                                      ("bad_size", "abc"), ("bad_size", "9" * 19)],
                         ids=["foreign-key", "no-size", "negative", "underscore", "letters",
                              "past-int64"])
def test_a_listed_entry_that_cannot_be_right_fails_the_listing(hostile, tmp_path, mode, bad):
    """A listing of ``p/`` that names ``p2/foreign``, or an object whose Size is missing,
    negative or not decimal digits, is a listing that cannot be trusted. Before: a
    missing Size made an empty file, "copied", exit 0; the foreign key was copied under a
    name cut from it; "-1" cost 8 GETs; "abc" and a size past int64 were tracebacks. Now
    the listing fails with a line naming the entry, nothing is written, and sync
    --delete deletes nothing."""
    for i in range(3):
        hostile.put("b", f"p/k{i}", _data(1000 + i, i))
    dst = tmp_path / "dst"
    assert sync("s3://b/p/", str(dst), delete=True).ok
    (dst / "extra").write_bytes(b"only here")
    before = _files(dst)
    hostile.set_mode(mode)
    hostile.bad_size = bad
    why = "not under the prefix" if mode == "foreign_key" else "not a count of bytes"
    with pytest.raises(ListingError, match=why):
        _cp("s3://b/p/", tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists() or not list((tmp_path / "fresh").iterdir())
    with pytest.raises(ListingError, match=why):
        sync("s3://b/p/", str(dst), delete=True)
    assert _files(dst) == before
    p = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "ls", "-r", "s3://b/p/"],
                       env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and why in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_the_next_page_is_asked_for_while_the_caller_reads_this_one(hostile):
    """The store works on page n+1 while the caller works through page n (two listings
    joined: while it works through the other's). A listing left early reads no further
    and leaves no connection behind; a page answered with an error is asked again."""
    hostile.page_size = 3
    for i in range(10):
        hostile.put("b", f"p/k{i}", b"x%d" % i)
    ep = EndpointCache().get("s3")

    def lists() -> int:
        return sum("list-type=2" in r for r in hostile.requests)
    it = ep.list("b", "p/")
    assert next(it).key == "p/k0"
    deadline = time.monotonic() + 5
    while lists() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lists() == 2            # page 2 asked for while page 1 is being read
    assert [o.key for o in it] == [f"p/k{i}" for i in range(1, 10)]
    assert lists() == 4 and not ep.pool._busy
    it = ep.list("b", "p/")
    next(it)
    it.close()                     # left early: page 2's answer is never read
    assert not ep.pool._busy       # (whether the server has logged page 2 yet is a race)
    hostile.set_mode("list_slow_down", times=2)   # page 1, then page 2 (sent ahead): both
    assert [o.key for o in ep.list("b", "p/")] == [f"p/k{i}" for i in range(10)]
    assert hostile.struck == 2 and not ep.pool._busy


@pytest.mark.parametrize("mode", ["entity_bomb", "external_entity", "utf16_doctype",
                                  "small_entity"])
def test_listing_page_with_a_dtd_is_refused(hostile, tmp_path, mode):
    """A store never sends a DTD: a page that declares entities (nested ten deep: 10^9
    "laugh"s; a SYSTEM entity naming a local file; either in UTF-16, where the bytes of
    "<!DOCTYPE" do not appear; one short entity that expat alone would expand into a key)
    fails the listing at once, bounded in time and memory, and nothing of the local file
    becomes a key."""
    import resource

    from trunkline.api.objects import ls

    hostile.put("b", "p/k", b"x")
    hostile.set_mode(mode)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    with pytest.raises(ListingError, match="not XML") as e:
        list(ls("s3://b/p/", recursive=True))
    assert time.monotonic() - t0 < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200 * 1024  # KiB
    assert hostile.struck == 1
    hostname = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() else ""
    assert not hostname or hostname not in str(e.value)
    with pytest.raises(ListingError):
        _cp("s3://b/p/", tmp_path)
    assert not list(tmp_path.iterdir())


def test_cli_listing_error_is_one_line_exit_1(hostile, tmp_path):
    hostile.put("b", "p/k", b"x")
    hostile.set_mode("missing_token")
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "cp", "-r", "-q",
                        "s3://b/p/", str(tmp_path / "o") + "/"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "no continuation token" in r.stderr and "Traceback" not in r.stderr


# -- verification with whatever the store keeps -------------------------------------------


@pytest.mark.parametrize("algo", CHECKSUM_ALGOS)
@pytest.mark.parametrize("size", [3000, BIG], ids=["one-get", "ranged"])
def test_each_store_checksum_verifies_and_catches_damage(hostile, tmp_path, algo, size):
    data = _data(size)
    hostile.put("b", "ok.bin", data, checksums={algo: stored_checksum(algo, data)})
    hostile.put("b", "bad.bin", data, checksums={algo: stored_checksum(algo, data[::-1])},
                etag='"opaque-etag"')
    r = _cp("s3://b/", tmp_path, retries=1)
    if size > 5 * MiB and algo in ("sha1", "sha256"):
        # a full-object SHA of a ranged download cannot be folded from parts: said so
        assert r.ok and not r.verified
        assert {u.name for u in r.unverified} == {"s3://b/ok.bin", "s3://b/bad.bin"}
        return
    assert r.verified == {algo: 1}, r.to_dict()
    assert [f.name for f in r.failures] == ["s3://b/bad.bin"]
    assert "mismatch" in r.failures[0].error
    assert _files(tmp_path) == {"ok.bin": data}
    if size > 5 * MiB:   # the good object is fetched once (its sums right the first time);
        # the damaged one again before it fails (each part re-fetched once)
        assert r.wire_bytes == 3 * size, r.to_dict()


@pytest.mark.parametrize("algo,value", [("crc32c", "!!!!"), ("crc32c", "AAAAAAAA"),
                                        ("crc64nvme", "AAAAAA=="), ("sha256", "AAAA"),
                                        ("crc32c", "AAAAAA==-x"), ("crc32c", "AAAAAA==-0")],
                         ids=["not-base64", "six-bytes", "crc64-of-four", "sha-of-three",
                              "count-x", "count-0"])
def test_a_checksum_value_that_is_not_one_is_not_a_mismatch(hostile, tmp_path, algo, value):
    """A store's checksum header that is not a value of its algorithm (not base64, the
    wrong width, a part count that is not one) was compared as if it were: the object
    was "damaged in flight", fetched 8 times and failed. It is nothing to compare with:
    the MD5 ETag checks the object where there is one; otherwise it is unverified, its
    reason naming the value. Fetched once either way."""
    data = _data(3000)
    hostile.put("b", "md5.bin", data, checksums={algo: value})
    hostile.put("b", "opaque.bin", data, checksums={algo: value}, etag='"opaque"')
    r = _cp("s3://b/", tmp_path)
    assert r.ok and r.retries == 0, r.to_dict()
    assert r.verified == {"md5-etag": 1}, r.verified
    assert [u.name for u in r.unverified] == ["s3://b/opaque.bin"]
    assert "is not one" in r.unverified[0].reason and value[:4] in r.unverified[0].reason
    assert _files(tmp_path) == {"md5.bin": data, "opaque.bin": data}
    assert r.wire_bytes == 2 * len(data)


def _parts(data: bytes, n: int) -> list[bytes]:
    return [data[i:i + n] for i in range(0, len(data), n)]


def test_composite_checksum_and_multipart_etag_with_our_part_boundaries(hostile, tmp_path):
    data = _data(BIG)
    parts = _parts(data, 5 * MiB)
    crcs = b"".join(google_crc32c.value(p).to_bytes(4, "big") for p in parts)
    hostile.put("b", "comp.bin", data, etag='"x-3"', checksum_type="COMPOSITE",
                checksums={"crc32c": f"{stored_checksum('crc32c', crcs)}-3"})
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    hostile.put("b", "etag.bin", data, etag=f'"{hashlib.md5(md5s).hexdigest()}-3"')
    hostile.put("b", "md5.bin", data[:4000])   # single-PUT MD5 ETag, one GET
    r = _cp("s3://b/", tmp_path)
    assert r.ok, r.failures
    assert r.verified == {"crc32c-composite": 1, "multipart-etag": 1, "md5-etag": 1}, r.verified
    assert _files(tmp_path) == {"comp.bin": data, "etag.bin": data, "md5.bin": data[:4000]}


def test_unverified_is_reported_and_require_verified_fails_it(hostile, tmp_path):
    hostile.put("b", "o.bin", _data(BIG), etag='"opaque"')
    r = _cp("s3://b/", tmp_path / "a")
    assert r.ok and not r.verified
    assert [(u.name, bool(u.reason)) for u in r.unverified] == [("s3://b/o.bin", True)]
    assert r.to_dict()["unverified"][0]["name"] == "s3://b/o.bin"
    r = _cp("s3://b/", tmp_path / "b", require_verified=True)
    assert not r.ok and "require-verified" in r.failures[0].error
    assert not (tmp_path / "b" / "o.bin").exists()


# -- partial files that cannot be aimed ---------------------------------------------------


def test_symlink_planted_at_the_partial_name_is_not_followed(hostile, tmp_path):
    data = _data(BIG)
    hostile.put("b", "d/f", data)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    dst = tmp_path / "dst"
    dst.mkdir()
    os.symlink(victim, dst / partial_name("f"))
    r = _cp("s3://b/d/", dst)
    assert r.ok, r.failures
    assert victim.read_bytes() == b"precious"
    assert (dst / "f").read_bytes() == data and not (dst / "f").is_symlink()


def test_symlinked_directory_planted_mid_path_is_refused(hostile, tmp_path):
    hostile.put("b", "d/sub/f", b"payload")
    outside = tmp_path / "outside"
    outside.mkdir()
    dst = tmp_path / "dst"
    dst.mkdir()
    os.symlink(outside, dst / "sub")   # planted before the copy: dest_path refuses it
    r = _cp("s3://b/d/", dst)
    assert not r.ok
    assert not list(outside.iterdir())


def test_sync_delete_does_not_follow_a_folder_swapped_for_a_symlink(hostile, tmp_path):
    """Between the listing and the deletions, whoever can write into the destination
    replaces a listed folder by a symlink to another one holding a file of the same name:
    ``sync --delete`` must not remove that file (it used to: ``os.unlink`` of the path)."""
    hostile.put("b", "d/keep", b"kept")
    dst = tmp_path / "dst"
    (dst / "x").mkdir(parents=True)
    (dst / "x" / "f").write_bytes(b"stale")          # destination-only: to be deleted
    (dst / "x" / "g").write_bytes(b"stale")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "f").write_bytes(b"precious")
    swapped = []

    def attacker(action):
        if action.op == "delete" and not swapped:   # listed; the deletions come later
            os.rename(dst / "x", tmp_path / "moved")
            os.symlink(victim, dst / "x")
            swapped.append(action.rel)

    r = sync("s3://b/d/", str(dst), delete=True, on_action=attacker)
    assert swapped == ["x/f"]
    assert (victim / "f").read_bytes() == b"precious"
    assert not r.ok and r.deleted == 0
    assert {f.error.split(":")[0] for f in r.failures} == {"delete"}
    assert all("refusing to delete through 'x'" in f.error for f in r.failures), r.failures
    assert (dst / "keep").read_bytes() == b"kept"


def test_keys_that_look_like_partial_files_cannot_collide(hostile, tmp_path):
    a, b = _data(BIG, 3), _data(BIG, 4)
    hostile.put("b", "d/f", a)
    hostile.put("b", "d/.f.tlpart", b)      # the old partial name of d/f
    hostile.put("b", "d/" + partial_name("f"), b"evil")   # today's: holds a backslash
    r = _cp("s3://b/d/", tmp_path)
    assert [f.name for f in r.failures] == ["s3://b/d/" + partial_name("f")]
    assert _files(tmp_path) == {"f": a, ".f.tlpart": b}


def test_key_at_the_255_byte_name_limit(hostile, tmp_path):
    key = "k" * 251 + ".bin"
    hostile.put("b", "d/" + key, _data(BIG))
    r = _cp("s3://b/d/", tmp_path)
    assert r.ok, r.failures
    assert (tmp_path / key).read_bytes() == _data(BIG)


def test_second_run_of_the_same_copy_says_already_running(hostile, tmp_path):
    hostile.put("b", "slow.bin", _data(BIG))
    hostile.set_mode("slow_trickle")
    hostile.trickle_piece, hostile.trickle_pause = 64 * 1024, 0.05
    out = str(tmp_path / "slow.bin")
    cmd = [sys.executable, "-m", "trunkline.cli.main", "cp", "-q", "-c", "1", "s3://b/slow.bin",
           out]
    first = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not any(x.startswith("GET /b/slow.bin") for x in hostile.requests):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        second = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1, second.stderr
        assert "already running" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.kill()
        first.communicate(timeout=30)


def test_terminal_control_characters_in_keys_are_escaped(hostile, tmp_path):
    key = "evil\x1b[2J\rname.bin"
    hostile.put("b", "d/" + key, _data(BIG))
    hostile.set_mode("wrong_range")
    r = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "cp", "-r", "-q",
                        "--retries", "0", "--part-size", PS, "s3://b/d/", str(tmp_path) + "/"],
                       env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "\x1b" not in r.stderr and "\r" not in r.stderr
    assert "evil\\x1b[2J\\x0dname.bin" in r.stderr


# -- a full disk --------------------------------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path):
    with mounted_tmpfs(tmp_path / "tiny", "8m") as mnt:
        yield mnt


def test_full_disk_fails_before_bytes_move_then_rerun_is_byte_identical(hostile, tiny_fs):
    objs = {"a.bin": _data(3 * MiB, 5), "b.bin": _data(3 * MiB + 7, 6)}
    for k, v in objs.items():
        hostile.put("b", "d/" + k, v)
    filler = tiny_fs / "filler"
    filler.write_bytes(b"\0" * (5 * MiB))
    dst = tiny_fs / "out"
    r = _cp("s3://b/d/", dst, retries=0)
    assert not r.ok
    failed = {f.name for f in r.failures}
    assert failed and all("No space" in f.error or "ENOSPC" in f.error for f in r.failures), \
        r.failures
    for k, v in objs.items():   # nothing corrupt at a final name: absent or whole
        p = dst / k
        assert (not p.exists()) or p.read_bytes() == v
        assert (f"s3://b/d/{k}" in failed) == (not p.exists())
    filler.unlink()
    r = _cp("s3://b/d/", dst)
    assert r.ok, r.failures
    assert _files(dst) == objs


def test_resume_rechecks_finished_objects_by_checksum(hostile, tmp_path):
    good = _data(4000, 7)
    hostile.put("b", "d/done.bin", good)
    hostile.put("b", "d/late.bin", _data(BIG, 8))
    hostile.set_mode("wrong_range")          # late.bin fails, done.bin finishes
    r = _cp("s3://b/d/", tmp_path, retries=0)
    assert [f.name for f in r.failures] == ["s3://b/d/late.bin"]
    p = tmp_path / "done.bin"
    st = p.stat()
    with open(p, "r+b") as f:                # same size, same time, other bytes
        f.write(b"X" * 10)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    hostile.set_mode("normal")
    r = _cp("s3://b/d/", tmp_path)
    assert r.ok, r.failures
    assert p.read_bytes() == good


def test_sync_does_not_trust_a_file_trunkline_did_not_finish(hostile, tmp_path):
    data = _data(4000, 11)
    hostile.put("b", "p/f.bin", data)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "f.bin").write_bytes(b"\0" * 4000)     # same size, as a zero-filled leftover
    os.utime(dst / "f.bin", (1785578400, 1785578400))   # the listed LastModified
    r = sync("s3://b/p/", str(dst))
    assert r.ok and r.copied == 1, r
    assert (dst / "f.bin").read_bytes() == data
    r = sync("s3://b/p/", str(dst))
    assert r.copied == 0 and r.unchanged == 1


def test_journal_lock_is_released_when_the_process_dies(hostile, tmp_path):
    """A killed run must not block the rerun: flock dies with its holder."""
    hostile.put("b", "x.bin", _data(4000))
    code = ("import sys,trunkline.engine.journal as j; jj=j.Journal.open(sys.argv[1],'a','b',{});"
            "import os; os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    from trunkline.engine.journal import Journal
    from trunkline.errors import AlreadyRunning

    with Journal.open(tmp_path, "a", "b", {}) as j:   # the dead holder's lock is gone
        with pytest.raises(AlreadyRunning):             # ours is held while open
            Journal.open(tmp_path, "a", "b", {})
    j.remove()


@pytest.mark.parametrize("skew", [0.0, 45.0, -45.0], ids=["same", "store-ahead", "store-behind"])
def test_probe_measures_the_store_clock_against_this_host(hostile, skew):
    """The store's Date headers against this host's clock: sync's rule for uploads (a
    file newer than the object's LastModified) misses an edit made within the lag after an
    upload when the store's clock is ahead. The probe reports the offset (within its
    stated error) and says what it costs past 2 s."""
    from trunkline import probe

    hostile.put("b", "p/obj", _data(2 * MiB))
    hostile.clock_skew_s = skew
    r = probe("s3://b/p/", duration=1.0, max_streams=2)
    assert r.clock_offset_s is not None and r.clock_error_s is not None
    assert abs(r.clock_offset_s - skew) <= r.clock_error_s + 0.05, (r.clock_offset_s, skew)
    assert r.clock_error_s <= 1.0
    notes = " ".join(r.notes)
    if skew > 0:
        assert "s ahead of this host's" in notes and "--checksum" in notes
    elif skew < 0:
        assert "behind this host's" in notes
    else:
        assert "clock" not in notes


def test_clock_offset_intersects_what_each_answer_allows():
    from trunkline.wire.clock import clock_offset

    # a store 10.3 s ahead; answers taken at host times 100.0, 100.4, 100.8 (0.01 s each)
    dates = [(t, t + 0.01, float(int(t + 0.005 + 10.3))) for t in (100.0, 100.4, 100.8)]
    off, err = clock_offset(dates)
    assert abs(off - 10.3) <= err and err < 0.5
    assert clock_offset([]) is None


@pytest.mark.parametrize("verb", ["download", "upload", "ls"])
def test_a_bucket_in_another_region_is_one_line_naming_it(hostile, tmp_path, verb):
    """S3 answers a request to the wrong region 301 with ``x-amz-bucket-region``. The
    redirect is not followed (the request was signed for this host), nor retried; the
    line names the region to set (it said "HEAD k: 301 HTTP301:")."""
    hostile.put("b", "k", b"x" * 100)
    (tmp_path / "up.bin").write_bytes(b"y" * 100)
    hostile.set_mode("wrong_region")
    args = {"download": ["cp", "s3://b/k", str(tmp_path / "down.bin")],
            "upload": ["cp", str(tmp_path / "up.bin"), "s3://b/up"],
            "ls": ["ls", "s3://b/"]}[verb]
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "trunkline.cli.main", *args],   # no probe:
                       env=dict(os.environ, TRUNKLINE_PROBE="0"),   # count the verb's own
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert "the bucket is in region eu-west-1: set AWS_REGION=eu-west-1" in p.stderr, p.stderr
    assert time.monotonic() - t0 < 20 and hostile.struck <= 3, hostile.requests
    assert not (tmp_path / "down.bin").exists()


@pytest.mark.parametrize("skew", [0.0, 30.0], ids=["same-clock", "store-30s-ahead"])
def test_sync_up_sees_an_edit_made_just_after_the_upload_whatever_the_store_clock(
        hostile, tmp_path, monkeypatch, skew):
    """A store whose clock leads this host's by 30 s stamps an upload 30 s "late": a file
    edited (same size) a moment after its upload had a time before the object's
    LastModified, and sync took it for unchanged, exit 0, the store keeping the old bytes.
    Now sync reads the store's clock from the Date of its listing and compares on it: the
    edit is copied. A file not edited since is not."""
    monkeypatch.setenv("TRUNKLINE_PROBE", "0")
    hostile.clock_skew_s = skew
    src = tmp_path / "src"
    src.mkdir()
    (src / "edited.bin").write_bytes(b"first version")
    (src / "same.bin").write_bytes(b"never edited")
    old = time.time() - 3600
    os.utime(src / "same.bin", (old, old))
    r = sync(str(src), "s3://b/s/")
    assert r.ok and r.copied == 2, r
    time.sleep(1.1)   # the edit is in a later second than the upload (S3 keeps seconds)
    (src / "edited.bin").write_bytes(b"later version")
    r = sync(str(src), "s3://b/s/")
    assert r.ok and r.copied == 1 and r.unchanged == 1, r
    assert hostile.objects[("b", "s/edited.bin")].data == b"later version"
