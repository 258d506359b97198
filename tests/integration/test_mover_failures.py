"""Failures leave nothing that looks complete, exit 1 with a clear line, never leak secrets,
and object keys never escape the destination."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trunkline.embedded_s3 import EmbeddedS3
from trunkline.storage.local import dest_path, partial_path
from trunkline.url import LocationError, safe_relpath

TRUNKLINE = [sys.executable, "-m", "trunkline.cli.main"]


def run_cli(args, env, timeout=120):
    e = dict(os.environ)
    e.update(env)
    e["TRUNKLINE_CONFIG"] = "/nonexistent/trunkline.toml"
    return subprocess.run(TRUNKLINE + args, env=e, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def doomed_server(tmp_path):
    """A server of our own that the test may kill."""
    srv = EmbeddedS3(data_dir=tmp_path / "doomed", buckets=("doom",))
    srv.start()
    yield srv
    srv.stop()


def _kill(srv: EmbeddedS3) -> None:
    import signal

    os.killpg(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(10)


def test_server_dies_mid_download(doomed_server, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(1536 * 1024 * 1024)  # sparse: quick to make, real bytes on the wire
    up = run_cli(["cp", "-q", str(big), "s3://doom/big.bin"], doomed_server.env, timeout=300)
    assert up.returncode == 0, up.stderr
    big.unlink()
    out = tmp_path / "out" / "big.bin"
    partial = Path(partial_path(str(out)))
    e = dict(os.environ, **doomed_server.env, TRUNKLINE_CONFIG="/nonexistent")
    proc = subprocess.Popen(
        TRUNKLINE + ["cp", "-q", "--retries", "2", "--timeout", "5", "-c", "4",
                     "s3://doom/big.bin", str(out)],
        env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not partial.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert partial.exists(), "download never started"
    _kill(doomed_server)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "failed:" in err and "big.bin" in err
    assert "Traceback" not in err
    assert not out.exists(), "a failed download left a complete-looking file"


def test_server_dies_mid_upload(doomed_server, tmp_path):
    big = tmp_path / "up.bin"
    with open(big, "wb") as f:
        f.truncate(3 * 1024 * 1024 * 1024)
    e = dict(os.environ, **doomed_server.env, TRUNKLINE_CONFIG="/nonexistent")
    proc = subprocess.Popen(
        TRUNKLINE + ["cp", "-q", "--retries", "2", "--timeout", "5", "-c", "4",
                     str(big), "s3://doom/up.bin"],
        env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(1.2)
    assert proc.poll() is None, "upload finished before the server could be killed"
    _kill(doomed_server)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "failed:" in err and "Traceback" not in err
    # bring the same store back: the object must not exist (the upload never completed)
    doomed_server.proc = None
    doomed_server.start()
    # (a capability probe killed with the server may leave its own .trunkline-probe-*
    # objects, removed by a later probe; they are not the object being uploaded)
    keys = [o["Key"] for o in
            doomed_server.client().list_objects_v2(Bucket="doom").get("Contents", ())]
    assert [k for k in keys if not k.startswith(".trunkline-probe-")] == []


def test_wrong_secret_fails_cleanly_without_printing_it(s3server, tmp_path):
    s3server.create_bucket("creds")
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 100)
    secret = "do-not-print-me-0123456789abcdef"
    env = dict(s3server.env, AWS_SECRET_ACCESS_KEY=secret)
    for extra in (["--debug"], ["--json"]):
        r = run_cli(["cp", *extra, "--retries", "0", str(f), "s3://creds/f.bin"], env)
        assert r.returncode == 1
        assert secret not in r.stdout + r.stderr
        assert "SignatureDoesNotMatch" in r.stderr or "AccessDenied" in r.stderr


def test_missing_source_is_one_line_exit_1(s3server, tmp_path):
    s3server.create_bucket("missing")
    r = run_cli(["cp", "s3://missing/nope.bin", str(tmp_path / "x")], s3server.env)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "nope.bin" in r.stderr


def test_usage_error_exit_2(tmp_path):
    r = run_cli(["cp", str(tmp_path / "a"), str(tmp_path / "b")], {})
    assert r.returncode == 2


def test_json_summary_has_per_connection_telemetry(s3server, tmp_path):
    s3server.create_bucket("jsn")
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(12 * 1024 * 1024))
    r = run_cli(["cp", "--json", "--part-size", "5M", str(f), "s3://jsn/f.bin"], s3server.env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["ok"] and d["bytes"] == 12 * 1024 * 1024 and d["objects"] == 1
    assert d["gbps"] > 0 and d["seconds"] > 0
    conns = d["connections"]
    assert conns and all("rtt_us" in c and "retransmits" in c for c in conns)
    assert sum(c["bytes_out"] for c in conns) >= 12 * 1024 * 1024


@pytest.mark.parametrize(
    "key",
    ["../../x", "/etc/passwd", "a/../../b", "a/./b", "..", "a\x00b", "dir/", "a\\..\\b"],
)
def test_hostile_keys_are_refused(key, tmp_path):
    with pytest.raises(LocationError):
        dest_path(str(tmp_path), key)


def test_symlinked_escape_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(outside)
    with pytest.raises(LocationError):
        dest_path(str(dest), "link/x")
    assert safe_relpath("a/b/c.bin") == "a/b/c.bin"
    assert Path(dest_path(str(dest), "a/b.bin")).parent.parent == dest.resolve()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", [1000, 12 * 1024 * 1024 + 5], ids=["small", "multipart"])
def test_a_listed_file_swapped_for_a_fifo_fails_instead_of_hanging(aws_env, tmp_path,
                                                                   monkeypatch, size):
    """Another process swaps a listed file for a FIFO before the upload opens it (here
    as the walk yields it). Opening a FIFO waits for a writer for ever: the copy
    hung. Now that object fails "no longer a regular file", the others are copied, and
    the call returns."""
    import threading

    import trunkline
    from trunkline.storage import local

    aws_env.create_bucket("swapped")
    src = tmp_path / "src"
    src.mkdir()
    data = {n: os.urandom(size) for n in ("a.bin", "b.bin", "c.bin")}
    for n, v in data.items():
        (src / n).write_bytes(v)
    real = local.walk

    def walk(root, on_skip=None):
        for f in real(root, on_skip):
            if f.rel == "b.bin":   # listed as a file; swapped in one step, as another
                os.mkfifo(tmp_path / "fifo")             # process would, before anyone
                os.rename(tmp_path / "fifo", src / "b.bin")   # opens it
            yield f

    monkeypatch.setattr(local, "walk", walk)
    out: list = []
    t = threading.Thread(target=lambda: out.append(trunkline.copy(
        str(src), "s3://swapped/up/", recursive=True, part_size="5M", retries=1)), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the copy hung on the FIFO"
    r = out[0]
    assert [f.name for f in r.failures] == [str(src / "b.bin")], r.failures
    assert "no longer a regular file" in r.failures[0].error
    c = aws_env.client()
    for n in ("a.bin", "c.bin"):
        assert c.get_object(Bucket="swapped", Key=f"up/{n}")["Body"].read() == data[n]
    assert "up/b.bin" not in {o["Key"] for o in c.list_objects_v2(
        Bucket="swapped", Prefix="up/").get("Contents", [])}


def test_a_fifo_named_as_the_source_is_refused(aws_env, tmp_path):
    """``cp FIFO s3://...`` is refused as a wrong argument (one line, exit 2): it would
    have waited for a writer."""
    aws_env.create_bucket("fifo-src")
    os.mkfifo(tmp_path / "pipe")
    p = run_cli(["cp", str(tmp_path / "pipe"), "s3://fifo-src/k"], os.environ, timeout=60)
    assert p.returncode == 2 and "is not a regular file" in p.stderr, p.stderr


def test_keys_that_are_a_file_and_a_folder_fail_clearly(aws_env, tmp_path):
    """S3 holds 'd/x' and 'd/x/y' at once; a folder cannot. One of the two fails with a
    line that says why (not "Is a directory: .tlpart..." or "a symlink?"), the other is
    whole at its name, and nothing wrong is at a final name. A user's own file where a
    key needs a folder is left as it is."""
    aws_env.create_bucket("clash")
    c = aws_env.client()
    objs = {"d/x": b"file x", "d/x/y": b"file y below x", "d/z": b"z"}
    for k, v in objs.items():
        c.put_object(Bucket="clash", Key=k, Body=v)
    dst = tmp_path / "dst"
    p = run_cli(["cp", "-r", "s3://clash/d/", f"{dst}/"], os.environ)
    assert p.returncode == 1, p.stderr
    failed = [ln for ln in p.stderr.splitlines() if ln.startswith("trunkline: failed:")]
    assert len(failed) == 1 and "a name cannot be a file and a folder" in failed[0], p.stderr
    assert (dst / "z").read_bytes() == b"z"
    if (dst / "x").is_dir():
        assert (dst / "x" / "y").read_bytes() == objs["d/x/y"] and "s3://clash/d/x:" in failed[0]
    else:
        assert (dst / "x").read_bytes() == objs["d/x"] and "s3://clash/d/x/y:" in failed[0]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "x").write_bytes(b"a user's file")
    p = run_cli(["cp", "-r", "s3://clash/d/x/", f"{mine}/x/"], os.environ)
    assert p.returncode == 1 and "a name cannot be a file and a folder" in p.stderr, p.stderr
    assert (mine / "x").read_bytes() == b"a user's file"
