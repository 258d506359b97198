"""verify through a real SeaweedFS: identical trees pass (multipart objects uploaded by
trunkline and by rclone), and a flipped byte, a missing object, a size change and an extra
key are each reported, one line per mismatch, exit 1."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

import trunkline
from conftest import require_tool
from trunkline.cli.main import cli
from trunkline.engine.plan import MiB


@pytest.fixture
def bucket(aws_env) -> str:
    name = f"verify-{uuid.uuid4().hex[:10]}"
    aws_env.create_bucket(name)
    return name


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vsrc")
    files = {
        "one.bin": os.urandom(1),
        "empty": b"",
        "dir/small.bin": os.urandom(70_000),
        "dir/multi.bin": os.urandom(12 * MiB + 5),   # 3 parts of 5 MiB
        "dir/exact.bin": os.urandom(10 * MiB),       # 2 full parts
        "b-x": b"dash",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _upload(tree: Path, bucket: str, prefix: str) -> None:
    r = trunkline.copy(str(tree), f"s3://{bucket}/{prefix}/", recursive=True, connections=4,
                       part_size="5M")
    assert r.ok, r.failures


def test_identical_trees_pass_trunkline_upload(tree, aws_env, bucket):
    _upload(tree, bucket, "t")
    r = trunkline.verify(str(tree), f"s3://{bucket}/t")
    assert r.ok, r.mismatches
    assert r.compared == 6 and r.src_objects == 6 and r.dst_objects == 6
    # multipart objects were proven by their stored checksum (trunkline uploads them with a
    # FULL_OBJECT CRC32C) or a recomputed multipart ETag, never by reading them back
    proven = sum(r.methods.get(m, 0) for m in ("crc32c", "composite-crc32c", "multipart-etag"))
    assert proven >= 2 and sum(r.methods.values()) == 6, r.methods
    assert "stream-crc32c" not in r.methods
    # and in the other direction, and s3 -> s3 after a server-side copy
    down = tree.parent / "vdown"
    assert trunkline.copy(f"s3://{bucket}/t/", str(down) + "/", recursive=True).ok
    assert trunkline.verify(f"s3://{bucket}/t", str(down)).ok
    assert trunkline.copy(f"s3://{bucket}/t/", f"s3://{bucket}/u/", recursive=True,
                          part_size="5M").ok
    r = trunkline.verify(f"s3://{bucket}/t", f"s3://{bucket}/u")
    assert r.ok, r.mismatches


def test_identical_trees_pass_rclone_upload(tree, aws_env, bucket, monkeypatch):
    rclone = require_tool("rclone")
    env = dict(os.environ)
    env.update({
        "RCLONE_CONFIG_X_TYPE": "s3", "RCLONE_CONFIG_X_PROVIDER": "Other",
        "RCLONE_CONFIG_X_ENDPOINT": aws_env.endpoint_url,
        "RCLONE_CONFIG_X_ACCESS_KEY_ID": aws_env.access_key,
        "RCLONE_CONFIG_X_SECRET_ACCESS_KEY": aws_env.secret_key,
        "RCLONE_CONFIG_X_FORCE_PATH_STYLE": "true",
        "RCLONE_CONFIG": "/nonexistent/rclone.conf",
    })
    subprocess.run([rclone, "copy", str(tree), f"x:{bucket}/r", "--s3-chunk-size", "5M",
                    "--s3-upload-cutoff", "5M", "--transfers", "2"],
                   env=env, check=True, capture_output=True, timeout=120)
    head = aws_env.client().head_object(Bucket=bucket, Key="r/dir/multi.bin")
    assert head["ETag"].strip('"').endswith("-3")   # really multipart
    r = trunkline.verify(str(tree), f"s3://{bucket}/r")
    assert r.ok, r.mismatches
    assert r.compared == 6
    assert "stream-crc32c" not in r.methods, r.methods
    # rclone -> trunkline s3 -> s3 copy: different uploads, same bytes
    assert trunkline.copy(f"s3://{bucket}/r/", f"s3://{bucket}/r2/", recursive=True,
                          part_size="8M").ok
    assert trunkline.verify(f"s3://{bucket}/r", f"s3://{bucket}/r2").ok


def test_every_mismatch_reported(tree, aws_env, bucket):
    _upload(tree, bucket, "m")
    c = aws_env.client()
    # a flipped byte, same size, written by another client (plain PUT: MD5 ETag only)
    data = bytearray((tree / "dir/small.bin").read_bytes())
    data[12345] ^= 0x01
    c.put_object(Bucket=bucket, Key="m/dir/small.bin", Body=bytes(data))
    # a flipped byte in a multipart object, same size, as a multipart upload
    big = bytearray((tree / "dir/multi.bin").read_bytes())
    big[11 * MiB] ^= 0x80
    up = c.create_multipart_upload(Bucket=bucket, Key="m/dir/multi.bin")["UploadId"]
    parts = []
    for n, off in enumerate(range(0, len(big), 5 * MiB), 1):
        e = c.upload_part(Bucket=bucket, Key="m/dir/multi.bin", UploadId=up, PartNumber=n,
                          Body=bytes(big[off:off + 5 * MiB]))["ETag"]
        parts.append({"PartNumber": n, "ETag": e})
    c.complete_multipart_upload(Bucket=bucket, Key="m/dir/multi.bin", UploadId=up,
                                MultipartUpload={"Parts": parts})
    c.delete_object(Bucket=bucket, Key="m/one.bin")
    c.put_object(Bucket=bucket, Key="m/b-x", Body=b"dashes")
    c.put_object(Bucket=bucket, Key="m/extra/thing", Body=b"x")

    res = CliRunner().invoke(cli, ["verify", str(tree), f"s3://{bucket}/m"])
    assert res.exit_code == 1, res.output
    lines = sorted(res.stdout.splitlines())
    assert [ln.split(":")[0] + ":" + ln.split(":")[1] for ln in lines] == [
        "content: dir/multi.bin", "content: dir/small.bin", "extra: extra/thing",
        "missing: one.bin", "size: b-x"], lines
    assert "MISMATCH: 5 mismatches" in res.stderr

    r = trunkline.verify(str(tree), f"s3://{bucket}/m", extra=False)
    assert {m.kind for m in r.mismatches} == {"content", "missing", "size"}
    res = CliRunner().invoke(cli, ["verify", "--json", "--exclude", "dir/**", str(tree),
                                   f"s3://{bucket}/m"])
    assert res.exit_code == 1
    import json

    rep = json.loads(res.stdout)
    assert not rep["ok"] and {m["kind"] for m in rep["mismatches"]} == {"missing", "size",
                                                                          "extra"}


def test_s3_to_s3_content_mismatch_and_pass(tree, aws_env, bucket):
    _upload(tree, bucket, "a")
    assert trunkline.copy(f"s3://{bucket}/a/", f"s3://{bucket}/b/", recursive=True).ok
    res = CliRunner().invoke(cli, ["verify", f"s3://{bucket}/a", f"s3://{bucket}/b"])
    assert res.exit_code == 0, res.output
    data = bytearray((tree / "dir/exact.bin").read_bytes())
    data[0] ^= 0xFF
    aws_env.client().put_object(Bucket=bucket, Key="b/dir/exact.bin", Body=bytes(data))
    r = trunkline.verify(f"s3://{bucket}/a", f"s3://{bucket}/b")
    assert [(m.kind, m.key) for m in r.mismatches] == [("content", "dir/exact.bin")]


def _put_composite(c, bucket: str, key: str, data: bytes, part: int = 5 * MiB) -> str:
    """A multipart upload with per-part CRC32C: the store keeps a COMPOSITE checksum."""
    from trunkline.engine.integrity import crc32c, crc32c_to_b64

    up = c.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32C")
    parts = []
    for n, off in enumerate(range(0, len(data), part), 1):
        body = data[off:off + part]
        r = c.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n,
                          Body=body, ChecksumCRC32C=crc32c_to_b64(crc32c(body)))
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32C": r["ChecksumCRC32C"]})
    c.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                MultipartUpload={"Parts": parts})
    return c.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED").get("ChecksumCRC32C", "")


def test_composite_crc32c_proves_and_disproves(tree, aws_env, bucket):
    c = aws_env.client()
    data = (tree / "dir/multi.bin").read_bytes()
    stored = _put_composite(c, bucket, "c/multi.bin", data)
    if not stored.endswith("-3"):
        pytest.skip(f"store keeps no COMPOSITE checksum ({stored!r})")
    only = ["--include", "multi.bin"]
    r = trunkline.verify(str(tree / "dir"), f"s3://{bucket}/c", filters=[(True, "multi.bin")])
    assert r.ok and r.methods == {"composite-crc32c": 1}, r
    bad = bytearray(data)
    bad[6 * MiB] ^= 0x10
    _put_composite(c, bucket, "c/multi.bin", bytes(bad))
    res = CliRunner().invoke(cli, ["verify", *only, str(tree / "dir"), f"s3://{bucket}/c"])
    assert res.exit_code == 1
    assert res.stdout.strip() == "content: multi.bin: differs (composite-crc32c/5242880)"
