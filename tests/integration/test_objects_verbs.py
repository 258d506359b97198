"""ls, du, rm, mb against the real embedded S3 server, through the CLI as a user runs them.
Expectations come from the files we uploaded (sizes and names computed here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import trunkline.api.objects as objs

CLI = [sys.executable, "-m", "trunkline.cli.main"]

# name -> size; "data/" and "database/" share a string prefix on purpose
TREE = {
    "data/a/x.bin": 1000, "data/a/y.bin": 2000, "data/b/z.bin": 3000, "data/top.txt": 10,
    "database/keep.bin": 500, "ctl/bad\x1b[31mkey": 7,
}


@pytest.fixture
def bucket(aws_env, request):
    name = "verbs-" + request.node.name.replace("_", "-")[:40].lower()
    aws_env.create_bucket(name)
    c = aws_env.client()
    for key, size in TREE.items():
        c.put_object(Bucket=name, Key=key, Body=os.urandom(size))
    return name


def run(*args, check=True):
    r = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def keys(bucket):
    return sorted(o.key for o in objs.ls(f"s3://{bucket}/", recursive=True))


def test_ls_levels_json_and_safe_output(bucket):
    r = run("ls", f"s3://{bucket}/data/")
    lines = r.stdout.splitlines()
    assert any(line.endswith("data/a/") and "DIR" in line for line in lines)
    assert any(line.endswith("data/top.txt") and " 10 " in line for line in lines)
    assert not any("x.bin" in line for line in lines)          # one level only

    r = run("ls", "-r", "--json", f"s3://{bucket}/")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert {d["key"]: d["size"] for d in rows} == TREE
    assert all(d["mtime"].endswith("Z") and d["etag_kind"] == "md5" for d in rows)

    r = run("ls", "-r", "--long", f"s3://{bucket}/ctl/")
    assert "\x1b" not in r.stdout and "bad\\x1b[31mkey" in r.stdout and "md5" in r.stdout

    r = run("ls", f"s3://{bucket}/data/*.bin")   # a glob matches at any depth below its base
    assert sorted(line.split()[-1] for line in r.stdout.splitlines()) == [
        "data/a/x.bin", "data/a/y.bin", "data/b/z.bin"]


def test_du_totals_and_depth(bucket):
    d = json.loads(run("du", "--json", f"s3://{bucket}/data").stdout)
    want = {k: v for k, v in TREE.items() if k.startswith("data/")}
    assert (d["objects"], d["bytes"]) == (len(want), sum(want.values()))
    d = json.loads(run("du", "--json", "--depth", "1", f"s3://{bucket}/data/").stdout)
    groups = {g["prefix"]: (g["objects"], g["bytes"]) for g in d["groups"]}
    assert groups == {"a/": (2, 3000), "b/": (1, 3000), ".": (1, 10)}


def test_rm_dry_run_prefix_and_guards(bucket):
    before = keys(bucket)
    r = run("rm", "-r", "--dry-run", f"s3://{bucket}/data")
    assert "would delete" in r.stdout and keys(bucket) == before    # nothing deleted

    r = run("rm", "-r", f"s3://{bucket}/", check=False)             # bucket root
    assert r.returncode == 2 and "--force" in r.stderr and keys(bucket) == before

    r = run("rm", f"s3://{bucket}/data/nope", check=False)          # missing key
    assert r.returncode == 1 and keys(bucket) == before

    r = run("rm", "-r", "--json", f"s3://{bucket}/data")            # folder semantics
    res = json.loads(r.stdout.splitlines()[-1])
    assert res["deleted"] == 4 and res["ok"]
    assert keys(bucket) == ["ctl/bad\x1b[31mkey", "database/keep.bin"]

    run("rm", f"s3://{bucket}/database/keep.bin")
    assert keys(bucket) == ["ctl/bad\x1b[31mkey"]


def test_rm_batches_over_one_thousand(aws_env):
    aws_env.create_bucket("verbs-many")
    c = aws_env.client()
    for i in range(1203):
        c.put_object(Bucket="verbs-many", Key=f"m/{i:05d}", Body=b"")
    res = objs.rm("s3://verbs-many/m/", recursive=True)
    assert res.ok and res.deleted == 1203 and keys("verbs-many") == []


def test_mb_then_ls(aws_env):
    run("mb", "s3://verbs-made")
    assert run("ls", "s3://verbs-made/").stdout == ""
    r = run("ls", "/tmp", check=False)
    assert r.returncode == 2


def test_plan_from_listing(bucket):
    r = run("plan", "--from", f"s3://{bucket}/data", "--link", "10G", "--rtt", "50ms", "--json")
    d = json.loads(r.stdout)
    want = [v for k, v in TREE.items() if k.startswith("data/")]
    assert d["size_bytes"] == sum(want) and d["profile"]["objects"] == len(want)
    hist = {h["class"]: (h["objects"], h["bytes"]) for h in d["profile"]["histogram"]}
    assert hist["<64KiB"] == (len(want), sum(want))
    # 4 tiny objects: the round trips, not the 10G link, bound the time
    assert d["regime"].startswith("small-object") and d["request_bound_time_s"] > d["time_s"]
    r = run("plan", "--from", f"s3://{bucket}/data", "--size", "1G", "--link", "10G",
            "--rtt", "5ms", check=False)
    assert r.returncode == 2
    r = run("plan", "--from", f"s3://{bucket}/data", "--link", "10G", "--rtt", "50ms")
    assert "bound by          small-object" in r.stdout and "<64KiB" in r.stdout


@pytest.mark.timeout(900)
def test_cat_multi_gib_object_is_byte_identical(aws_env, tmp_path):
    """cat of a multi-GiB object (parallel ranged GETs, order kept) hashes like the source."""
    import hashlib

    import trunkline

    aws_env.create_bucket("verbs-cat")
    src = tmp_path / "big.bin"
    h = hashlib.sha256()
    block = os.urandom(4 << 20)
    with open(src, "wb") as f:
        for i in range(512):                       # 2 GiB, each 4 MiB block made distinct
            b = i.to_bytes(4, "big") + block[4:]
            f.write(b)
            h.update(b)
        f.write(b"tail")
        h.update(b"tail")
    assert trunkline.copy(str(src), "s3://verbs-cat/big.bin").ok
    src.unlink()                                   # 2 GiB less on disk while we read
    # started by a small launcher that reports its child's peak RSS: a child forked straight
    # from this (large) pytest process would start its maxrss at ours
    launch = ("import resource, subprocess, sys; r = subprocess.call(sys.argv[1:]); "
              "sys.stderr.write('MAXRSS %d\\n' % resource.getrusage("
              "resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r)")
    p = subprocess.Popen([sys.executable, "-S", "-c", launch, *CLI, "cat", "-c", "6",
                          "s3://verbs-cat/big.bin"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = hashlib.sha256()
    n = 0
    while chunk := p.stdout.read(1 << 20):        # type: ignore[union-attr]
        got.update(chunk)
        n += len(chunk)
    err = p.stderr.read().decode()                # type: ignore[union-attr]
    assert p.wait(60) == 0, err
    assert n == (2 << 30) + 4 and got.hexdigest() == h.hexdigest()
    # bounded: 8 reused parts of 8 MiB, not the object (peak RSS of the cat process)
    rss_mib = int(err.rsplit("MAXRSS ", 1)[1].split()[0]) / 1024
    assert rss_mib < 300, f"cat peak RSS {rss_mib:.0f} MiB"
    assert objs.rm("s3://verbs-cat/big.bin").deleted == 1   # 2 GiB less in the session's store


def test_cat_checks_the_bytes_and_the_version(aws_env, tmp_path, monkeypatch):
    """A byte flipped on the way fails cat (exit 1) for a single-part object (MD5 ETag);
    a prefix or a missing key is refused."""
    from trunkline.testing import Proxy
    from trunkline.testing.proxy import Fault

    aws_env.create_bucket("verbs-cat2")
    data = os.urandom(3 << 20)
    aws_env.client().put_object(Bucket="verbs-cat2", Key="one.bin", Body=data)
    r = subprocess.run([*CLI, "cat", "--part-size", "1MiB", "s3://verbs-cat2/one.bin"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == data
    with Proxy(("127.0.0.1", aws_env.port),
               faults=[Fault("flip", at_byte=12345, path_contains="one.bin")]) as px:
        env = dict(os.environ, AWS_ENDPOINT_URL=px.endpoint_url)
        r = subprocess.run([*CLI, "cat", "--part-size", "1MiB", "s3://verbs-cat2/one.bin"],
                           capture_output=True, timeout=60, env=env)
    assert r.returncode == 1 and b"MD5" in r.stderr
    assert run("cat", "s3://verbs-cat2/", check=False).returncode == 2
    assert run("cat", "s3://verbs-cat2/nope", check=False).returncode == 1


@pytest.mark.parametrize("verb", ["cat", "ls"])
def test_a_reader_that_goes_away_ends_the_verb_quietly_with_141(aws_env, verb):
    """``trunkline cat ... | head -c 100`` or ``ls -r ... | head -1``: when the reader of
    stdout closes, the verb stops with 141 (as a program SIGPIPE ends) and says nothing;
    a pipe read to the end still gives 0."""
    bucket = f"verbs-pipe-{verb}"
    aws_env.create_bucket(bucket)
    c = aws_env.client()
    if verb == "cat":
        c.put_object(Bucket=bucket, Key="big.bin", Body=os.urandom(8 << 20))
        args = ["cat", f"s3://{bucket}/big.bin"]
    else:   # well past a pipe's 64 KiB, so a write meets the closed reader
        for i in range(300):   # ~250 bytes a line
            c.put_object(Bucket=bucket, Key=f"k/{i:05d}-{'x' * 200}", Body=b"x")
        args = ["ls", "-r", f"s3://{bucket}/"]
    p = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.read(100)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 141, err
    assert err == b""
    whole = subprocess.run([*CLI, *args], capture_output=True, timeout=60)
    assert whole.returncode == 0 and len(whole.stdout) > 64 * 1024, whole.stderr


def test_cat_into_a_full_disk_fails(aws_env, tmp_path):
    """``cat > file`` on a disk that fills mid-part: exit 1 with the disk's error, never 0
    with a truncated file (a buffered write returns a short count without an error: the
    rest must be written, and meets ENOSPC)."""
    from conftest import mounted_tmpfs

    aws_env.create_bucket("verbs-cat-full")
    aws_env.client().put_object(Bucket="verbs-cat-full", Key="obj.bin",
                                Body=os.urandom(3 << 20))
    with mounted_tmpfs(tmp_path / "tiny", "1m") as mnt:
        with open(mnt / "out.bin", "wb") as f:
            r = subprocess.run([*CLI, "cat", "s3://verbs-cat-full/obj.bin"], stdout=f,
                               stderr=subprocess.PIPE, text=True, timeout=60)
        assert r.returncode == 1, r.stderr
        assert "No space left" in r.stderr
        assert (mnt / "out.bin").stat().st_size < 3 << 20


def test_rm_of_keys_that_xml_cannot_carry_or_would_change(aws_env):
    """DeleteObjects names its keys in an XML body. A control character cannot be carried
    there at all (such a key goes alone, as a DeleteObject naming it in the path); a raw
    CR is read back by the store's parser as a LF, so the request would name another key;
    & < > and quotes must be escaped. Each key asked for is deleted, and no other."""
    aws_env.create_bucket("verbs-odd")
    c = aws_env.client()
    doomed = ["o/esc\x1b[31m", "o/cr\rlf", "o/amp&<lt>\"q'", "o/tab\tx", "o/plain"]
    kept = ["o/cr\nlf", "o/crlf", "keep/x"]
    for k in doomed + kept:
        c.put_object(Bucket="verbs-odd", Key=k, Body=b"x")
    for k in doomed:
        res = objs.rm(f"s3://verbs-odd/{k}")
        assert res.ok and res.deleted == 1, (k, res.failures)
    assert keys("verbs-odd") == sorted(kept)
    for k in ("o/plain", "o/esc\x1b[31m"):   # and in one batch, through a listing
        c.put_object(Bucket="verbs-odd", Key=k, Body=b"x")
    res = objs.rm("s3://verbs-odd/o/", recursive=True)
    assert res.ok and res.deleted == 4, res.failures
    assert keys("verbs-odd") == ["keep/x"]
