"""sync through a real SeaweedFS: local -> s3, s3 -> local, s3 -> s3; new, changed,
unchanged, --delete, --dry-run, include/exclude, --checksum."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

import trunkline
from trunkline.cli.main import cli
from trunkline.engine.plan import MiB


@pytest.fixture
def bucket(aws_env) -> str:
    name = f"sync-{uuid.uuid4().hex[:10]}"
    aws_env.create_bucket(name)
    return name


def _tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha",
        "b/c.bin": os.urandom(3000),
        "b/d/e.bin": os.urandom(10),
        "b-x.dat": b"dash sorts before slash",
        "big.bin": os.urandom(11 * MiB + 3),   # multipart with 5 MiB parts
        "skip/me.tmp": b"tmp",
        "empty": b"",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.utime(p, (time.time() - 3600, time.time() - 3600))  # older than any upload
    return files


def _keys(s3server, bucket: str, prefix: str = "") -> dict[str, str]:
    c = s3server.client()
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", ()):
            out[o["Key"][len(prefix):]] = o["ETag"]
    return out


def _get(s3server, bucket: str, key: str) -> bytes:
    return s3server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


KW = dict(connections=4, part_size="5M")


def test_local_to_s3_new_unchanged_changed_delete(tmp_path, aws_env, bucket):
    src = tmp_path / "src"
    files = _tree(src)
    dst = f"s3://{bucket}/data"
    r = trunkline.sync(str(src), dst, **KW)
    assert r.ok and r.copied == len(files) and r.unchanged == 0
    assert r.transfer is not None and r.transfer.objects == len(files)
    keys = _keys(aws_env, bucket, "data/")
    assert set(keys) == set(files)
    assert _get(aws_env, bucket, "data/big.bin") == files["big.bin"]

    r = trunkline.sync(str(src), dst, **KW)
    assert r.ok and r.copied == 0 and r.unchanged == len(files)
    assert r.transfer is not None and r.transfer.bytes == 0 and r.transfer.requests == 0

    # changed: same size, newer mtime; new file; a file removed locally
    (src / "a.txt").write_bytes(b"ALPHA")
    later = time.time() + 5
    os.utime(src / "a.txt", (later, later))
    (src / "new.txt").write_bytes(b"new")
    (src / "b" / "c.bin").unlink()
    r = trunkline.sync(str(src), dst, **KW)
    assert r.ok and r.copied == 2 and r.deleted == 0
    assert _get(aws_env, bucket, "data/a.txt") == b"ALPHA"
    assert "b/c.bin" in _keys(aws_env, bucket, "data/")   # no --delete: kept

    r = trunkline.sync(str(src), dst, delete=True, **KW)
    assert r.ok and r.deleted == 1
    assert set(_keys(aws_env, bucket, "data/")) == (set(files) - {"b/c.bin"}) | {"new.txt"}


def test_an_unchanged_upload_sync_writes_nothing_to_the_store(tmp_path, aws_env, bucket,
                                                              monkeypatch):
    """The destination's capability probe writes (and removes) test objects: it runs only
    once there is something to send, so an unchanged sync leaves a versioned bucket
    without new versions. Syncing to the bucket's root, a probe's objects (another
    process's, live or left by a kill) are passed by, never deleted under it."""
    from trunkline.storage import capabilities

    monkeypatch.setenv("TRUNKLINE_PROBE_TTL", "0")     # no answer kept on disk
    monkeypatch.setattr(capabilities, "_cache", {})
    probed: list[str] = []
    real = capabilities.probe

    def probe(client, bkt, *a, **kw):
        probed.append(bkt)
        return real(client, bkt, *a, **kw)

    monkeypatch.setattr(capabilities, "probe", probe)
    src = tmp_path / "src"
    files = _tree(src)
    dst = f"s3://{bucket}"
    r = trunkline.sync(str(src), dst, **KW)
    assert r.ok and r.copied == len(files) and probed == [bucket]
    other = ".trunkline-probe-0123abcdp4242-0123456789ab/crc32c"   # another process's
    aws_env.client().put_object(Bucket=bucket, Key=other, Body=b"probe")
    monkeypatch.setattr(capabilities, "_cache", {})
    r = trunkline.sync(str(src), dst, delete=True, **KW)
    assert r.ok and r.copied == 0 and r.deleted == 0 and r.dst_objects == len(files), r
    assert probed == [bucket], "an unchanged sync probed the store"
    assert set(_keys(aws_env, bucket)) == set(files) | {other}


def test_dry_run_prints_and_changes_nothing(tmp_path, aws_env, bucket):
    src = tmp_path / "src"
    _tree(src)
    dst = f"s3://{bucket}/p/"
    assert trunkline.sync(str(src), dst, **KW).ok
    # an extra remote key, a changed size, a new file
    aws_env.client().put_object(Bucket=bucket, Key="p/only-remote", Body=b"x")
    (src / "a.txt").write_bytes(b"longer than before")
    (src / "fresh").write_bytes(b"f")
    before = _keys(aws_env, bucket, "p/")
    res = CliRunner().invoke(cli, ["sync", "--dry-run", "--delete", "-q", str(src), dst])
    assert res.exit_code == 0, res.output
    lines = sorted(line for line in res.stdout.splitlines() if line)
    assert lines == ["copy\ta.txt\t(size)", "copy\tfresh\t(new)",
                     "delete\tonly-remote\t(not in source)"]
    assert _keys(aws_env, bucket, "p/") == before
    assert "would copy 2" in res.stderr and "would delete 1" in res.stderr


def test_include_exclude_in_command_line_order(tmp_path, aws_env, bucket):
    src = tmp_path / "src"
    _tree(src)
    dst = f"s3://{bucket}/f"
    args = ["sync", "-q", "-c", "2", "--exclude", "*.tmp", "--include", "b/**",
            "--include", "a.txt", str(src), dst]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert set(_keys(aws_env, bucket, "f/")) == {"a.txt", "b/c.bin", "b/d/e.bin"}
    # include before exclude: the include wins for matching keys
    res = CliRunner().invoke(cli, ["sync", "-q", "--include", "skip/**", "--exclude",
                                   "*.tmp", str(src), f"s3://{bucket}/g"])
    assert res.exit_code == 0, res.output
    assert set(_keys(aws_env, bucket, "g/")) == {"skip/me.tmp"}
    # excluded destination keys are not deleted by --delete
    aws_env.client().put_object(Bucket=bucket, Key="g/keep.tmp", Body=b"k")
    r = trunkline.sync(str(src), f"s3://{bucket}/g", delete=True,
                       filters=[(True, "skip/**"), (False, "*.tmp")], **KW)
    assert r.ok and r.deleted == 0 and "keep.tmp" in _keys(aws_env, bucket, "g/")


def test_s3_to_local_and_back_changes(tmp_path, aws_env, bucket):
    src = tmp_path / "src"
    files = _tree(src)
    assert trunkline.sync(str(src), f"s3://{bucket}/d", **KW).ok
    # SeaweedFS lists by directory ('b/c.bin' before 'b-x.dat'): the merge with the local
    # walk (in byte order) meets keys it has already passed, on both directions below
    listed = list(_keys(aws_env, bucket, "d/"))
    assert listed != sorted(listed, key=str.encode), listed
    down = tmp_path / "down"
    r = trunkline.sync(f"s3://{bucket}/d", str(down), **KW)
    assert r.ok and r.copied == len(files)
    for rel, data in files.items():
        assert (down / rel).read_bytes() == data
    r = trunkline.sync(f"s3://{bucket}/d/", str(down), **KW)
    assert r.ok and r.copied == 0 and r.unchanged == len(files)

    # a local edit of the same size: its mtime no longer matches the object's -> restored
    (down / "a.txt").write_bytes(b"XXXXX")
    later = time.time() + 5  # an edit made later than the 1 s window after the download
    os.utime(down / "a.txt", (later, later))
    # a remote change of size
    aws_env.client().put_object(Bucket=bucket, Key="d/b/d/e.bin", Body=b"0123456789AB")
    (down / "stray").write_bytes(b"s")
    r = trunkline.sync(f"s3://{bucket}/d", str(down), delete=True, **KW)
    assert r.ok and r.copied == 2 and r.deleted == 1, r
    assert (down / "a.txt").read_bytes() == b"alpha"
    assert (down / "b/d/e.bin").read_bytes() == b"0123456789AB"
    assert not (down / "stray").exists()


def test_names_that_are_not_utf8(tmp_path, aws_env, bucket):
    """A local file name is any bytes; an S3 key is UTF-8. Anyone who can write into a
    shared destination can plant such a name: a download sync must still work (it used to
    stop with a UnicodeEncodeError from the join's index), and an upload names the file."""
    src = tmp_path / "src"
    files = _tree(src)
    assert trunkline.sync(str(src), f"s3://{bucket}/d", **KW).ok
    down = tmp_path / "down"
    assert trunkline.sync(f"s3://{bucket}/d", str(down), **KW).ok
    odd = os.path.join(os.fsencode(down), b"b", b"odd\xff")      # passed by the merge
    tail = os.path.join(os.fsencode(down), b"zz\xfe")            # after every source key
    for p in (odd, tail):
        with open(p, "wb") as f:
            f.write(b"planted")
    r = trunkline.sync(f"s3://{bucket}/d", str(down), **KW)
    assert r.ok and r.copied == 0 and r.unchanged == len(files) and r.deleted == 0, r
    assert os.path.exists(odd) and os.path.exists(tail)
    r = trunkline.sync(f"s3://{bucket}/d", str(down), delete=True, **KW)
    assert r.ok and r.deleted == 2 and r.unchanged == len(files), r
    assert not os.path.exists(odd) and not os.path.exists(tail)
    for rel, data in files.items():
        assert (down / rel).read_bytes() == data

    with open(os.path.join(os.fsencode(src), b"bad\xff"), "wb") as f:
        f.write(b"bad")
    r = trunkline.sync(str(src), f"s3://{bucket}/d", **KW)
    assert not r.ok and r.transfer is not None
    [failure] = r.transfer.failures
    assert "is not UTF-8" in failure.error and "bad\\xff" in failure.error
    assert set(_keys(aws_env, bucket, "d/")) == set(files)


def test_a_local_path_that_is_not_utf8(tmp_path, aws_env, bucket):
    """A folder or file whose path is not UTF-8 (a Latin-1 name from an older system) is
    copied into and from like any other. Every such copy used to stop with a
    UnicodeEncodeError traceback: the journal hashed and stored the path as UTF-8."""
    files = _tree(tmp_path / "src")
    assert trunkline.sync(str(tmp_path / "src"), f"s3://{bucket}/d", **KW).ok
    down = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    blocked = os.path.join(down, b"a.txt")
    os.makedirs(blocked)            # one object cannot land: the run fails, its journal stays
    cp = (f"s3://{bucket}/d/", os.fsdecode(down) + "/")
    r = trunkline.copy(*cp, recursive=True, **KW)
    assert not r.ok and [f.name for f in r.failures] == [f"s3://{bucket}/d/a.txt"], r.failures
    rest = sum(map(len, files.values())) - len(files["a.txt"])
    r = trunkline.copy(*cp, recursive=True, **KW)      # the rerun finds the rest done
    assert not r.ok and r.skipped_bytes == rest, r
    os.rmdir(blocked)
    r = trunkline.copy(*cp, recursive=True, **KW)
    assert r.ok and r.bytes == len(files["a.txt"]) and r.skipped_bytes == rest, r
    for rel, data in files.items():
        with open(os.path.join(down, os.fsencode(rel)), "rb") as f:
            assert f.read() == data, rel
    r = trunkline.sync(f"s3://{bucket}/d", os.fsdecode(down), **KW)
    assert r.ok and r.copied == 0 and r.unchanged == len(files), r

    odd = os.path.join(down, b"gro\xdf.bin")         # a multipart upload, its key named in full
    os.rename(os.path.join(down, b"big.bin"), odd)
    r = trunkline.copy(os.fsdecode(odd), f"s3://{bucket}/named.bin", **KW)
    assert r.ok and r.bytes == len(files["big.bin"]), r
    assert _get(aws_env, bucket, "named.bin") == files["big.bin"]


def test_s3_to_s3(aws_env, bucket, tmp_path):
    src = tmp_path / "src"
    files = _tree(src)
    assert trunkline.sync(str(src), f"s3://{bucket}/s", **KW).ok
    r = trunkline.sync(f"s3://{bucket}/s", f"s3://{bucket}/t", **KW)
    assert r.ok and r.copied == len(files)
    assert _get(aws_env, bucket, "t/big.bin") == files["big.bin"]
    r = trunkline.sync(f"s3://{bucket}/s", f"s3://{bucket}/t", **KW)
    assert r.ok and r.copied == 0 and r.unchanged == len(files)
    aws_env.client().put_object(Bucket=bucket, Key="s/a.txt", Body=b"a changed size")
    aws_env.client().put_object(Bucket=bucket, Key="t/extra", Body=b"e")
    r = trunkline.sync(f"s3://{bucket}/s", f"s3://{bucket}/t", delete=True, **KW)
    assert r.ok and r.copied == 1 and r.deleted == 1
    assert _get(aws_env, bucket, "t/a.txt") == b"a changed size"
    assert "extra" not in _keys(aws_env, bucket, "t/")


def test_checksum_finds_same_size_same_time_change(tmp_path, aws_env, bucket):
    src = tmp_path / "src"
    files = _tree(src)
    dst = f"s3://{bucket}/c"
    assert trunkline.sync(str(src), dst, **KW).ok
    # same size, and an mtime older than the upload: only content tells them apart
    data = bytearray(files["big.bin"])
    data[7 * MiB] ^= 0xFF
    (src / "big.bin").write_bytes(bytes(data))
    (src / "a.txt").write_bytes(b"ALPHA")
    old = time.time() - 3600
    for rel in ("big.bin", "a.txt"):
        os.utime(src / rel, (old, old))
    assert trunkline.sync(str(src), dst, dry_run=True, **KW).copied == 0
    r = trunkline.sync(str(src), dst, checksum=True, **KW)
    assert r.ok and r.copied == 2 and r.unchanged == len(files) - 2
    got = hashlib.sha256(_get(aws_env, bucket, "c/big.bin")).hexdigest()
    assert got == hashlib.sha256(bytes(data)).hexdigest()
    r = trunkline.sync(str(src), dst, checksum=True, **KW)
    assert r.ok and r.copied == 0


def test_usage_errors(tmp_path, aws_env, bucket):
    (tmp_path / "f").write_bytes(b"x")
    res = CliRunner().invoke(cli, ["sync", str(tmp_path / "f"), f"s3://{bucket}/x"])
    assert res.exit_code == 2 and "folder" in res.stderr
    res = CliRunner().invoke(cli, ["sync", str(tmp_path), str(tmp_path / "o")])
    assert res.exit_code == 2 and "both source and destination are local" in res.stderr


def test_overlap_and_empty_source_are_refused(tmp_path, aws_env, bucket):
    res = CliRunner().invoke(cli, ["sync", f"s3://{bucket}/a", f"s3://{bucket}/a/b"])
    assert res.exit_code == 2 and "overlap" in res.stderr
    aws_env.client().put_object(Bucket=bucket, Key="kept/x", Body=b"x")
    empty = tmp_path / "empty"
    empty.mkdir()
    r = trunkline.sync(str(empty), f"s3://{bucket}/kept", delete=True)
    assert not r.ok and r.deleted == 0 and "source is empty" in str(r.failures[0])
    assert "x" in _keys(aws_env, bucket, "kept/")


def test_a_sync_whose_copies_fail_says_how_many_were_copied(tmp_path, aws_env, bucket,
                                                            monkeypatch):
    """Files removed or written by another process after the listing fail, each with a
    line that says so; the summary counts what was copied (it printed the plan's count,
    "copied 40", with 3 of the 40 failed), and --delete acts on nothing."""
    from trunkline.storage import local

    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"f{i}.bin").write_bytes(os.urandom(1000 + i))
    real = local.walk

    def walk(root, on_skip=None):
        for f in real(root, on_skip):
            if f.rel == "f2.bin":     # listed (f holds its stat), then removed
                os.remove(src / "f2.bin")
            elif f.rel == "f5.bin":   # listed, then written
                (src / "f5.bin").write_bytes(b"newer")
            yield f

    monkeypatch.setattr(local, "walk", walk)
    r = trunkline.sync(str(src), f"s3://{bucket}/s/", delete=True, **KW)
    assert not r.ok and (r.copied, r.failed) == (6, 2), r
    assert r.copied_bytes == sum(1000 + i for i in range(8) if i not in (2, 5))
    why = {f.name.rsplit("/", 1)[-1]: f.error for f in r.transfer.failures}
    assert "removed since it was listed" in why["f2.bin"]
    assert "changed since it was listed" in why["f5.bin"]
    assert set(_keys(aws_env, bucket, "s/")) == {f"f{i}.bin" for i in (0, 1, 3, 4, 6, 7)}


def _odd_names(src: Path) -> set[str]:
    """Names in ``src`` that are not files: a symlinked folder, a dangling symlink, a
    symlink loop, a FIFO (the walk skips each, and says so)."""
    (src / "elsewhere").mkdir()
    (src / "elsewhere" / "in.bin").write_bytes(b"reached through a link")
    (src / "train").symlink_to(src / "elsewhere")
    (src / "dangling").symlink_to(src / "nothing")
    (src / "loop-a").symlink_to(src / "loop-b")
    (src / "loop-b").symlink_to(src / "loop-a")
    os.mkfifo(src / "pipe")
    return {"train", "dangling", "loop-a", "loop-b", "pipe"}


def test_names_that_are_not_files_are_listed_and_guard_their_keys_from_delete(
        tmp_path, aws_env, bucket):
    """A source folder whose ``train`` is a symlink to another folder, with a dangling
    symlink, a symlink loop and a FIFO. Each was dropped without a word (the loop stopped
    the whole walk with "Too many levels of symbolic links"), and sync --delete then
    deleted the destination's ``train/...``, the copies of what the link names. Now each
    is listed as skipped, with why, the files are copied, exit 0, and --delete leaves the
    keys under a skipped name alone (the source has that name, only not as a file)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(b"a")
    odd = _odd_names(src)
    c = aws_env.client()
    for key in ("s/train/in.bin", "s/pipe", "s/gone.bin"):
        c.put_object(Bucket=bucket, Key=key, Body=b"was here")
    r = trunkline.sync(str(src), f"s3://{bucket}/s/", delete=True, **KW)
    assert r.ok, r
    assert {s.name for s in r.skipped} == odd, r.skipped
    why = {s.name: s.reason for s in r.skipped}
    assert "symlink to a folder" in why["train"] and "loop" in why["loop-a"]
    assert "nothing" in why["dangling"] and "not a regular file" in why["pipe"]
    assert set(_keys(aws_env, bucket, "s/")) == {"a.bin", "elsewhere/in.bin", "train/in.bin",
                                                 "pipe"}
    assert r.deleted == 1
    p = CliRunner().invoke(cli, ["sync", str(src), f"s3://{bucket}/s/", "--delete"])
    assert p.exit_code == 0, p.output
    assert "5 skipped (not files)" in p.output and "trunkline: skipped: train: a symlink" \
        in p.output, p.output
    # verify agrees: the keys sync kept are not "extra", and the names are listed
    rep = trunkline.verify(str(src), f"s3://{bucket}/s/")
    assert rep.ok and {s.name for s in rep.skipped} == odd, rep


def test_cp_of_a_folder_lists_the_names_it_skips(tmp_path, aws_env, bucket):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(b"a")
    odd = _odd_names(src)
    r = trunkline.copy(str(src), f"s3://{bucket}/c/", recursive=True, **KW)
    assert r.ok and r.objects == 2, r.failures
    assert {s.name for s in r.skipped} == odd
    assert {s["name"] for s in r.to_dict()["skipped"]} == odd
    p = CliRunner().invoke(cli, ["cp", "-r", "-q", str(src), f"s3://{bucket}/c2/"])
    assert p.exit_code == 0 and p.output.count("trunkline: skipped: ") == 5, p.output


def test_a_key_ending_in_a_slash_that_holds_bytes_is_listed_not_lost(
        tmp_path, rgw_server, monkeypatch):
    """RGW keeps bytes under a key ending in '/' as S3 does (SeaweedFS makes the key a
    folder and drops them). No file can have that name, so a download cannot copy it, and
    the listing dropped it without a word, as it drops the empty folder markers: data left
    behind with exit 0, unseen. Now it is listed as skipped, with why; an empty marker
    still passes in silence."""
    from conftest import point_env_at
    from trunkline.engine.jobs import SKIP_KEY_AS_FOLDER

    point_env_at(rgw_server, monkeypatch)
    bucket = f"slash-{uuid.uuid4().hex[:8]}"
    rgw_server.create_bucket(bucket)
    c = rgw_server.client()
    for key, body in (("k/a.bin", b"a"), ("k/notes/", b"twelve bytes"), ("k/empty/", b"")):
        c.put_object(Bucket=bucket, Key=key, Body=body)
    assert c.get_object(Bucket=bucket, Key="k/notes/")["Body"].read() == b"twelve bytes"
    r = trunkline.copy(f"s3://{bucket}/k/", str(tmp_path / "d"), recursive=True, **KW)
    assert r.ok and r.objects == 1, r.failures
    assert [(s.name, s.reason) for s in r.skipped] == [("notes/", SKIP_KEY_AS_FOLDER)]
    assert sorted(os.listdir(tmp_path / "d")) == ["a.bin"]
    p = CliRunner().invoke(cli, ["sync", f"s3://{bucket}/k/", str(tmp_path / "e")])
    assert p.exit_code == 0, p.output
    assert "trunkline: skipped: notes/: a key ending in '/'" in p.output, p.output
    assert "1 skipped (not files)" in p.output, p.output
    rep = trunkline.verify(f"s3://{bucket}/k/", str(tmp_path / "d"))
    assert rep.ok and [s.name for s in rep.skipped] == ["notes/"], rep
    # between stores too: the key is not copied, and it is said so
    r = trunkline.copy(f"s3://{bucket}/k/", f"s3://{bucket}/copy/", recursive=True, **KW)
    assert r.ok and [s.name for s in r.skipped] == ["notes/"], r
