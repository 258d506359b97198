"""Shared fixtures: real S3 servers on loopback for the whole session.

``s3server``/``aws_env`` is SeaweedFS (the default store of most tests); ``store``/``store_env``
run a test on each of the three S3 implementations the mover is proven on (SeaweedFS,
Ceph RGW, the JuiceFS gateway), each started once per session and only when asked for.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import time
import zlib
from pathlib import Path

import google_crc32c
import pytest

from trunkline.embedded_s3 import EmbeddedS3
from trunkline.tools import PROVIDERS, find_tool

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str):
    """A real filesystem of ``size`` (a tmpfs) at ``path``, for full-disk tests; skips
    where mounting is not allowed (not root). Unmounted on exit."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(mnt: Path) -> Path:
    """Every block left on the file system at ``mnt`` taken by one file; -> that file
    (unlink it to make room again)."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 65536) > 0:
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler
SHARED_DATA = Path(os.environ.get("TRUNKLINE_SHARED_DATA", SHARED / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (captures, enrichment tables); skip clearly when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set TRUNKLINE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _isolated_state(tmp_path_factory):
    """Nothing of the tests depends on, or writes to, the user's HOME: resume journals,
    AWS and trunkline config, matplotlib's cache all live in a temp dir of the session."""
    state = tmp_path_factory.mktemp("state")
    isolated = {
        "TRUNKLINE_STATE_DIR": str(state / "trunkline"),
        "AWS_CONFIG_FILE": str(state / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(state / "no-aws-credentials"),
        "MPLCONFIGDIR": str(state / "matplotlib"),
        # stores restart on recycled ports: no probe answer outlives its process here
        # (tests/integration/test_capability_cache.py turns the disk cache on)
        "TRUNKLINE_PROBE_TTL": "0",
    }
    old = {k: os.environ.get(k) for k in isolated}
    os.environ.update(isolated)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def s3server(tmp_path_factory):
    """A real SeaweedFS (weed mini) on free loopback ports, stopped at session end."""
    srv = EmbeddedS3(data_dir=tmp_path_factory.mktemp("weed"))
    srv.start()
    yield srv
    srv.stop()


def point_env_at(srv, monkeypatch):
    """The AWS_* variables of ``srv``, and no user config file; returns ``srv``."""
    for k, v in srv.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TRUNKLINE_CONFIG", "/nonexistent/trunkline.toml")
    return srv


@pytest.fixture
def aws_env(s3server, monkeypatch):
    """The AWS_* variables of the session server, and no user config file."""
    return point_env_at(s3server, monkeypatch)


def require_tool(name: str) -> str:
    """A tool the test needs, found as the product finds it (trunkline.tools).

    Absent, the test is skipped with what to install, except where CI sets
    TRUNKLINE_REQUIRE_TOOLS=1: there a missing tool is a failure, so that a missing
    install step cannot hide behind skips.
    """
    path = find_tool(name)
    if not path:
        msg = f"{name} not installed ({PROVIDERS.get(name, 'scripts/system-deps.sh')})"
        if os.environ.get("TRUNKLINE_REQUIRE_TOOLS") == "1":
            pytest.fail(msg + " and TRUNKLINE_REQUIRE_TOOLS=1")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def rgw_server(tmp_path_factory):
    """A one-node Ceph cluster with radosgw (memstore OSD) on loopback, for the session."""
    from trunkline.testing.embedded_rgw import EmbeddedRGW

    for tool in ("radosgw", "radosgw-admin", "ceph-mon", "ceph-osd", "monmaptool", "ceph"):
        require_tool(tool)
    srv = EmbeddedRGW(data_dir=tmp_path_factory.mktemp("rgw"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def juicefs_server(tmp_path_factory):
    """A JuiceFS S3 gateway (SQLite metadata, local block directory) on loopback."""
    from trunkline.testing.embedded_juicefs import EmbeddedJuiceFS

    require_tool("juicefs")
    srv = EmbeddedJuiceFS(data_dir=tmp_path_factory.mktemp("juicefs"))
    srv.start()
    yield srv
    srv.stop()


STORES = ("seaweedfs", "rgw", "juicefs")
_STORE_FIXTURE = {"seaweedfs": "s3server", "rgw": "rgw_server", "juicefs": "juicefs_server"}


@pytest.fixture(scope="session", params=STORES)
def store(request):
    """Each S3 implementation in turn (the test runs once per store)."""
    return request.getfixturevalue(_STORE_FIXTURE[request.param])


@pytest.fixture
def store_env(store, monkeypatch):
    """Like ``aws_env``, for the store of this parametrisation."""
    return point_env_at(store, monkeypatch)


# -- independent references: what a test compares the mover's work with -----------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(8 << 20):
            h.update(b)
    return h.hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by its path relative to it."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file()}


def bucket_digest(srv, bucket: str, prefix: str) -> dict[str, str]:
    """What an independent reader (botocore) finds under ``prefix``: sha256 by name."""
    c = srv.client()
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", ()):
            body = c.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            out[o["Key"][len(prefix):]] = hashlib.sha256(body).hexdigest()
    return out


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _crc64nvme(data: bytes) -> int:
    from awscrt import checksums

    return checksums.crc64nvme(data)


_STORED = {
    "crc32c": lambda d: _b64(google_crc32c.value(d).to_bytes(4, "big")),
    "crc32": lambda d: _b64(zlib.crc32(d).to_bytes(4, "big")),
    "crc64nvme": lambda d: _b64(_crc64nvme(d).to_bytes(8, "big")),
    "sha1": lambda d: _b64(hashlib.sha1(d).digest()),
    "sha256": lambda d: _b64(hashlib.sha256(d).digest()),
}
CHECKSUM_ALGOS = tuple(sorted(_STORED))


def stored_checksum(algo: str, data: bytes) -> str:
    """The full-object ``x-amz-checksum-<algo>`` a store must keep for ``data``, computed
    by the libraries themselves (zlib, google-crc32c, awscrt, hashlib), not by trunkline."""
    return _STORED[algo.lower()](data)


def rclone_env(srv) -> dict[str, str]:
    """rclone pointed at ``srv`` as remote ``TL:``, with no config file of the user's."""
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


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A loopback port free now (UDP by default), for a collector a test starts."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_stops_on_sigterm(proc: subprocess.Popen, *, wait_s: float,
                            within_s: float = 1.5) -> None:
    """SIGTERM ``proc`` (a collector started with ``stderr=PIPE``) and wait up to ``wait_s``
    for it: it must exit 0, in under ``within_s`` seconds. The caller still kills it in a
    ``finally`` for a failure before this, or a wait that times out."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=wait_s)
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr.read()
    assert took < within_s, f"SIGTERM took {took:.2f}s"


TIERS = ("unit", "integration", "system")


def pytest_collection_modifyitems(config, items):
    """Each test carries its tier as a marker, from its folder: ``tests/unit`` (pure cores,
    seconds), ``tests/integration`` (the embedded S3 server, loopback sockets, processes),
    ``tests/system`` (tshark, softflowd, pmacct, rclone, s5cmd, Chromium, Ray, Ceph RGW,
    JuiceFS). ``pytest -m unit`` or ``make test-unit`` runs the fast tier alone."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
