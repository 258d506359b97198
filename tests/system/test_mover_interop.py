"""Interop with rclone (an independent S3 client): what we upload, rclone downloads
byte-identical, and what rclone uploads, we download byte-identical."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import trunkline
from conftest import rclone_env, require_tool, tree_digest
from trunkline.engine.plan import MiB


def _rclone() -> str:
    return require_tool("rclone")




@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "multi.bin").write_bytes(os.urandom(13 * MiB + 7))
    (root / "one.bin").write_bytes(b"z")
    (root / "empty.bin").write_bytes(b"")
    for i in range(30):
        (root / "sub" / f"s{i}.bin").write_bytes(os.urandom(1000 * i))
    return root


def test_rclone_reads_what_we_write(s3server, tree, tmp_path, monkeypatch):
    rclone = _rclone()
    for k, v in s3server.env.items():
        monkeypatch.setenv(k, v)
    s3server.create_bucket("interop1")
    r = trunkline.copy(str(tree), "s3://interop1/t/", recursive=True, part_size=5 * MiB)
    assert r.ok, r.failures
    out = tmp_path / "by-rclone"
    p = subprocess.run([rclone, "copy", "tl:interop1/t", str(out)], env=rclone_env(s3server),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert tree_digest(out) == tree_digest(tree)
    # rclone's own integrity check (sizes and MD5/ETag where it can) agrees too
    p = subprocess.run([rclone, "check", str(tree), "tl:interop1/t"], env=rclone_env(s3server),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_we_read_what_rclone_writes(s3server, tree, tmp_path, monkeypatch):
    rclone = _rclone()
    for k, v in s3server.env.items():
        monkeypatch.setenv(k, v)
    s3server.create_bucket("interop2")
    p = subprocess.run([rclone, "copy", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M",
                        str(tree), "tl:interop2/t"], env=rclone_env(s3server),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "by-us"
    r = trunkline.copy("s3://interop2/t/", str(out) + "/", recursive=True, part_size=8 * MiB)
    assert r.ok, r.failures
    assert tree_digest(out) == tree_digest(tree)
