"""The capability probe's answer kept on disk (``TRUNKLINE_PROBE_TTL``): a later process
uploads without probing again; a stale, foreign or damaged file is never trusted.

Against the embedded SeaweedFS; the "later process" is a fresh process cache
(``capabilities.forget(disk=False)``) with the same state dir, as a new ``trunkline cp``
would have."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

import trunkline
from trunkline.storage import capabilities


@pytest.fixture
def cache_on(aws_env, monkeypatch):
    monkeypatch.setenv("TRUNKLINE_PROBE_TTL", "600")
    capabilities.forget()
    yield aws_env
    capabilities.forget()


def _files():
    d = capabilities._disk_dir()
    return sorted(d.glob("*.json")) if d is not None and d.is_dir() else []


def _probe_objects(srv, bucket) -> int:
    """Objects a probe left under its prefix in ``bucket`` (0: none, or none ran)."""
    r = srv.client().list_objects_v2(Bucket=bucket, Prefix=".trunkline-probe-")
    return len(r.get("Contents", ()))


def test_second_process_reuses_the_answer_without_probing(cache_on, tmp_path):
    srv = cache_on
    srv.create_bucket("capc")
    f = tmp_path / "x.bin"
    f.write_bytes(os.urandom(3000))
    r1 = trunkline.copy(str(f), "s3://capc/a.bin")
    assert r1.ok and r1.capabilities["store"]["from_cache"] is False
    (path,) = _files()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    capabilities.forget(disk=False)            # a new process, same state dir

    calls = []
    real = capabilities.probe
    try:
        capabilities.probe = lambda *a, **k: calls.append(1) or real(*a, **k)
        r2 = trunkline.copy(str(f), "s3://capc/b.bin")
    finally:
        capabilities.probe = real
    assert r2.ok, r2.failures
    assert calls == []                         # no probe ran
    assert r2.capabilities["store"]["from_cache"] is True
    assert r2.capabilities["used"] == r1.capabilities["used"]
    assert r2.capabilities["store"]["checksums"] == r1.capabilities["store"]["checksums"]
    body = srv.client().get_object(Bucket="capc", Key="b.bin")["Body"].read()
    assert body == f.read_bytes()
    assert _probe_objects(srv, "capc") == 0


@pytest.mark.parametrize("damage", ["garbage", "wrong-type", "other-endpoint", "stale",
                                    "future", "huge", "older-format"])
def test_a_damaged_stale_or_foreign_file_is_probed_again(cache_on, tmp_path, damage):
    srv = cache_on
    srv.create_bucket("capd")
    f = tmp_path / "x.bin"
    f.write_bytes(os.urandom(3000))
    assert trunkline.copy(str(f), "s3://capd/a.bin").ok
    (path,) = _files()
    d = json.loads(path.read_text())
    if damage == "garbage":
        path.write_bytes(b"\x00{not json")
    elif damage == "wrong-type":
        d["capabilities"]["checksums"]["crc32c"]["verified"] = "yes"
        path.write_text(json.dumps(d))
    elif damage == "other-endpoint":
        d["endpoint"] = d["capabilities"]["endpoint"] = "http://127.0.0.1:1"
        path.write_text(json.dumps(d))
    elif damage == "stale":
        d["probed_at"] -= 601
        path.write_text(json.dumps(d))
    elif damage == "future":
        d["probed_at"] += 3600
        path.write_text(json.dumps(d))
    elif damage == "older-format":   # format 1 knew nothing of trailers
        d["format"] = 1
        del d["capabilities"]["trailer_crc32c"]
        path.write_text(json.dumps(d))
    else:
        path.write_text(json.dumps(d) + " " * (capabilities._MAX_FILE + 1))
    capabilities.forget(disk=False)
    r = trunkline.copy(str(f), "s3://capd/b.bin")
    assert r.ok, r.failures
    assert r.capabilities["store"]["from_cache"] is False      # probed again
    fresh = json.loads(path.read_text())                       # and the file replaced
    assert fresh["format"] == capabilities._FORMAT and isinstance(
        fresh["capabilities"]["checksums"]["crc32c"]["verified"], bool)


def test_ttl_zero_keeps_nothing_on_disk(aws_env, monkeypatch, tmp_path):
    monkeypatch.setenv("TRUNKLINE_PROBE_TTL", "0")
    capabilities.forget()
    aws_env.create_bucket("cap0")
    f = tmp_path / "x.bin"
    f.write_bytes(b"y" * 100)
    assert trunkline.copy(str(f), "s3://cap0/a.bin").ok
    monkeypatch.setenv("TRUNKLINE_PROBE_TTL", "600")
    assert _files() == []
    capabilities.forget()


def test_cli_upload_start_needs_no_botocore_when_cached(cache_on, tmp_path):
    """The point of the cache: a cached endpoint's upload loads no botocore."""
    srv = cache_on
    srv.create_bucket("capb")
    f = tmp_path / "x.bin"
    f.write_bytes(os.urandom(1000))
    assert trunkline.copy(str(f), "s3://capb/warm.bin").ok     # fills the disk cache
    code = ("import sys, runpy; sys.argv = ['trunkline', 'cp', '-q', sys.argv[1], sys.argv[2]]\n"
            "try:\n    runpy.run_module('trunkline.cli.main', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('botocore' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(f), "s3://capb/cli.bin"],
                       env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False", r.stdout + r.stderr
    assert srv.client().get_object(Bucket="capb", Key="cli.bin")["Body"].read() == f.read_bytes()
