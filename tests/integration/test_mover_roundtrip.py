"""Round trips through a real SeaweedFS: local -> s3 -> local, s3 -> s3 (server-side and
streamed), byte-identical by sha256, for edge sizes, many small objects and multi-GiB."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import trunkline
from conftest import bucket_digest, sha256_file, tree_digest
from trunkline.embedded_s3 import EmbeddedS3
from trunkline.engine.plan import MiB
from trunkline.storage.partial import is_partial_name
from trunkline.storage.s3 import S3Error

PART = 5 * MiB
SIZES = {
    "empty.bin": 0,
    "one.bin": 1,
    "below.bin": PART - 1,
    "exact.bin": PART,
    "above.bin": PART + 1,
    "three.bin": 3 * PART + 17,
}


@pytest.fixture
def edge_tree(tmp_path) -> Path:
    root = tmp_path / "src"
    (root / "nested" / "deeper").mkdir(parents=True)
    for name, size in SIZES.items():
        (root / name).write_bytes(os.urandom(size))
    for i in range(120):
        (root / "nested" / f"small-{i:03d}.bin").write_bytes(os.urandom(4096 + i))
    (root / "nested" / "deeper" / "name with spaces+plus.bin").write_bytes(os.urandom(1000))
    return root


def test_local_s3_local_roundtrip(aws_env, edge_tree, tmp_path):
    aws_env.create_bucket("rt1")
    up = trunkline.copy(str(edge_tree), "s3://rt1/data/", recursive=True, part_size=PART,
                        max_connections=8)
    assert up.ok, up.failures
    assert up.objects == len(SIZES) + 121
    assert up.bytes == sum(p.stat().st_size for p in edge_tree.rglob("*") if p.is_file())
    # an independent reader (botocore, not our data path) sees the same bytes
    c = aws_env.client()
    body = c.get_object(Bucket="rt1", Key="data/three.bin")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha256_file(edge_tree / "three.bin")
    head = c.head_object(Bucket="rt1", Key="data/three.bin")
    assert head["ETag"].strip('"').endswith("-4")  # really multipart: 3 parts + 17 bytes

    back = tmp_path / "back"
    down = trunkline.copy("s3://rt1/data/", str(back) + "/", recursive=True, part_size=PART,
                          max_connections=8)
    assert down.ok, down.failures
    assert tree_digest(back) == tree_digest(edge_tree)
    assert not [p for p in back.rglob("*") if is_partial_name(p.name)]


def test_single_object_forms(aws_env, tmp_path):
    aws_env.create_bucket("rt2")
    f = tmp_path / "x.bin"
    f.write_bytes(os.urandom(12345))
    assert trunkline.copy(str(f), "s3://rt2/dir/").ok           # into a prefix
    assert trunkline.copy(str(f), "s3://rt2/renamed.bin").ok    # to a key
    assert trunkline.copy("s3://rt2/dir/x.bin", str(tmp_path / "out") + "/").ok
    assert trunkline.copy("s3://rt2/renamed.bin", str(tmp_path / "y.bin")).ok
    assert sha256_file(tmp_path / "out" / "x.bin") == sha256_file(f) == sha256_file(tmp_path / "y.bin")


def test_glob_selects_matching_keys(aws_env, tmp_path):
    aws_env.create_bucket("rt3")
    c = aws_env.client()
    for k in ("g/a.bin", "g/b.txt", "g/sub/c.bin"):
        c.put_object(Bucket="rt3", Key=k, Body=k.encode())
    r = trunkline.copy("s3://rt3/g/*.bin", str(tmp_path / "g") + "/")
    assert r.ok and r.objects == 2
    assert (tmp_path / "g" / "a.bin").read_bytes() == b"g/a.bin"
    assert (tmp_path / "g" / "sub" / "c.bin").read_bytes() == b"g/sub/c.bin"
    assert not (tmp_path / "g" / "b.txt").exists()


def test_s3_to_s3_server_side_and_streamed(aws_env, edge_tree):
    aws_env.create_bucket("rt4")
    aws_env.create_bucket("rt4b")
    assert trunkline.copy(str(edge_tree), "s3://rt4/src/", recursive=True, part_size=PART).ok
    src = {k: v for k, v in bucket_digest(aws_env, "rt4", "src/").items()}
    server = trunkline.copy("s3://rt4/src/", "s3://rt4b/ss/", recursive=True, part_size=PART)
    assert server.ok, server.failures
    assert server.wire_bytes == 0  # no payload byte passed through us
    streamed = trunkline.copy("s3://rt4/src/", "s3://rt4b/st/", recursive=True, part_size=PART,
                              server_side=False, max_memory=3 * PART)
    assert streamed.ok, streamed.failures
    assert streamed.wire_bytes >= 2 * sum(SIZES.values())  # down and up again
    assert bucket_digest(aws_env, "rt4b", "ss/") == src
    assert bucket_digest(aws_env, "rt4b", "st/") == src



@pytest.fixture(scope="module")
def second_server(tmp_path_factory):
    srv = EmbeddedS3(data_dir=tmp_path_factory.mktemp("weed2"), buckets=("other",))
    srv.start()
    yield srv
    srv.stop()


def test_cross_endpoint_stream_via_named_endpoints(aws_env, second_server, edge_tree, tmp_path,
                                                   monkeypatch):
    """b2:... -> r2:... style: two real servers, two named endpoints, bounded memory."""
    cfg = tmp_path / "trunkline.toml"
    cfg.write_text(
        f"""
[endpoints.here]
url = "{aws_env.endpoint_url}"
access_key_id_env = "HERE_KEY"
secret_access_key_env = "HERE_SECRET"

[endpoints.there]
url = "{second_server.endpoint_url}"
access_key_id_env = "THERE_KEY"
secret_access_key_env = "THERE_SECRET"
"""
    )
    monkeypatch.setenv("TRUNKLINE_CONFIG", str(cfg))
    monkeypatch.setenv("HERE_KEY", aws_env.access_key)
    monkeypatch.setenv("HERE_SECRET", aws_env.secret_key)
    monkeypatch.setenv("THERE_KEY", second_server.access_key)
    monkeypatch.setenv("THERE_SECRET", second_server.secret_key)
    aws_env.create_bucket("xep")
    assert trunkline.copy(str(edge_tree), "here:xep/d/", recursive=True, part_size=PART).ok
    r = trunkline.copy("here:xep/d/", "there:other/copy/", recursive=True, part_size=PART,
                       max_memory=2 * PART, max_connections=8)
    assert r.ok, r.failures
    assert r.peak_buffer_bytes <= 2 * PART
    assert bucket_digest(second_server, "other", "copy/") == bucket_digest(aws_env, "xep", "d/")


@pytest.mark.slow
def test_multi_gib_roundtrip(aws_env, tmp_path):
    aws_env.create_bucket("huge")
    f = tmp_path / "huge.bin"
    size = 2 * 1024 * MiB + 12345
    block = os.urandom(8 * MiB)
    with open(f, "wb") as out:
        left = size
        i = 0
        while left:
            # vary each block so that a misplaced part cannot go unnoticed
            chunk = (i.to_bytes(8, "little") + block[8:])[: min(len(block), left)]
            out.write(chunk)
            left -= len(chunk)
            i += 1
    up = trunkline.copy(str(f), "s3://huge/huge.bin", part_size=64 * MiB)
    assert up.ok, up.failures
    back = tmp_path / "back.bin"
    down = trunkline.copy("s3://huge/huge.bin", str(back), part_size=64 * MiB)
    assert down.ok, down.failures
    assert back.stat().st_size == size
    assert sha256_file(back) == sha256_file(f)
    f.unlink()
    back.unlink()


def test_https_roundtrip_with_private_ca(tmp_path, monkeypatch, edge_tree):
    """TLS end to end: our connections (no sendfile on TLS) and botocore's, one private CA."""
    srv = EmbeddedS3(data_dir=tmp_path / "tls", buckets=("tls",), https=True)
    srv.start()
    try:
        for k, v in srv.env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("AWS_ENDPOINT_URL", srv.https_url)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(srv.ca_file))
        monkeypatch.setenv("TRUNKLINE_CONFIG", "/nonexistent")
        up = trunkline.copy(str(edge_tree), "s3://tls/t/", recursive=True, part_size=PART)
        assert up.ok, up.failures
        back = tmp_path / "back"
        down = trunkline.copy("s3://tls/t/", str(back) + "/", recursive=True, part_size=PART)
        assert down.ok, down.failures
        assert tree_digest(back) == tree_digest(edge_tree)
        assert all(c["remote"].endswith(f":{srv.https_port}") for c in down.connections)
        # the CLI shakes hands while it loads (wire/preconnect.py), over the same CAs
        cli = [sys.executable, "-m", "trunkline.cli.main", "cp", "-q", "s3://tls/t/one.bin"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        r = subprocess.run([*cli, str(tmp_path / "cli.bin")], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "cli.bin").read_bytes() == (edge_tree / "one.bin").read_bytes()
        monkeypatch.delenv("AWS_CA_BUNDLE")
        # an untrusted certificate is a clear error, and no byte lands
        with pytest.raises(S3Error, match="(?i)certificate"):
            trunkline.copy("s3://tls/t/one.bin", str(tmp_path / "x.bin"), retries=0)
        assert not (tmp_path / "x.bin").exists()
        env.pop("AWS_CA_BUNDLE")
        r = subprocess.run([*cli, str(tmp_path / "x.bin"), "--retries", "0"], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "certificate" in r.stderr.lower(), r.stderr
        assert not (tmp_path / "x.bin").exists()
    finally:
        srv.stop()


@pytest.mark.parametrize("probe", ["probed", "not-probed"])
def test_a_store_front_that_answers_once_per_connection(s3server, tmp_path, monkeypatch, probe):
    """A front that closes each connection after one answer, saying so (``Connection:
    close``, as nginx does at ``keepalive_requests``): each next request goes on a new
    connection, never on the closed one. No retries are allowed, so none can hide a
    request sent into a closed socket. Probed, the stream between two buckets passes its
    parts through (SeaweedFS checks trailers); not probed, it buffers them: both reuse a
    try's connection for the next request. The small downloads go in batches, one
    connection for several objects."""
    from conftest import point_env_at
    from trunkline.storage import capabilities
    from trunkline.testing.refusing_proxy import RefusingProxy

    point_env_at(s3server, monkeypatch)
    capabilities.forget()
    if probe == "not-probed":
        monkeypatch.setenv("TRUNKLINE_PROBE", "0")
    b = f"once-{probe}"
    s3server.create_bucket(b)
    c = s3server.client()
    big = os.urandom(11 * MiB + 7)
    c.put_object(Bucket=b, Key="big.bin", Body=big)
    small = {f"s/{i:02d}.bin": os.urandom(1000 + i) for i in range(24)}
    for k, v in small.items():
        c.put_object(Bucket=b, Key=k, Body=v)
    with RefusingProxy(("127.0.0.1", s3server.port), refuse="nothing") as px:
        monkeypatch.setenv("AWS_ENDPOINT_URL", px.endpoint_url)
        r = trunkline.copy(f"s3://{b}/big.bin", f"s3://{b}/copy.bin", server_side=False,
                           part_size="5M", retries=0)
        assert r.ok, r.failures
        assert r.capabilities.get("used", {}).get("trailing_crc32c", False) is (probe == "probed")
        d = trunkline.copy(f"s3://{b}/s/", f"{tmp_path}/s/", recursive=True, retries=0)
        assert d.ok, d.failures
        assert px.refused == []
    assert c.get_object(Bucket=b, Key="copy.bin")["Body"].read() == big
    assert {f"s/{p.name}": p.read_bytes() for p in (tmp_path / "s").iterdir()} == small
    capabilities.forget()
