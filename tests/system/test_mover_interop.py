"""Interop with rclone (an independent S3 client): what we upload, rclone downloads
byte-identical, and what rclone uploads, we download byte-identical."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

import trunkline
from conftest import require_tool
from trunkline.engine.plan import MiB


def _rclone() -> str:
    return require_tool("rclone")


def _rclone_env(srv) -> dict[str, str]:
    return dict(
        os.environ,
        RCLONE_CONFIG_TL_TYPE="s3",
        RCLONE_CONFIG_TL_PROVIDER="Other",
        RCLONE_CONFIG_TL_ENDPOINT=srv.endpoint_url,
        RCLONE_CONFIG_TL_ACCESS_KEY_ID=srv.access_key,
        RCLONE_CONFIG_TL_SECRET_ACCESS_KEY=srv.secret_key,
        RCLONE_CONFIG_TL_FORCE_PATH_STYLE="true",
        RCLONE_CONFIG="/dev/null",
    )


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


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
    p = subprocess.run([rclone, "copy", "tl:interop1/t", str(out)], env=_rclone_env(s3server),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert _digest(out) == _digest(tree)
    # rclone's own integrity check (sizes and MD5/ETag where it can) agrees too
    p = subprocess.run([rclone, "check", str(tree), "tl:interop1/t"], env=_rclone_env(s3server),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_we_read_what_rclone_writes(s3server, tree, tmp_path, monkeypatch):
    rclone = _rclone()
    for k, v in s3server.env.items():
        monkeypatch.setenv(k, v)
    s3server.create_bucket("interop2")
    p = subprocess.run([rclone, "copy", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M",
                        str(tree), "tl:interop2/t"], env=_rclone_env(s3server),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "by-us"
    r = trunkline.copy("s3://interop2/t/", str(out) + "/", recursive=True, part_size=8 * MiB)
    assert r.ok, r.failures
    assert _digest(out) == _digest(tree)
