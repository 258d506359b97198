"""verify with whatever the store keeps, against the real SeaweedFS.

Objects are uploaded by boto3 with ``ChecksumAlgorithm=...`` (CRC32, CRC32C,
CRC64NVME, SHA-1, SHA-256); the value the store keeps is first checked against our own
independent computation of it, then ``trunkline verify`` must prove an identical file
equal and find a single flipped byte, naming the algorithm that found it (the MD5 ETag
only ever proves equality: under SSE it may be opaque). Where nothing the stores keep
settles a pair and reading is off, the pair is reported unverified, and
``--require-verified`` makes that a failure.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid

import pytest
from click.testing import CliRunner

import trunkline
from conftest import stored_checksum
from trunkline.cli.main import cli
from trunkline.engine.plan import MiB

ALGOS = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]


@pytest.fixture
def bucket(aws_env) -> str:
    name = f"vck-{uuid.uuid4().hex[:10]}"
    aws_env.create_bucket(name)
    return name


def _plain_client(srv):
    """A botocore client that adds no checksum of its own (objects with none at all)."""
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "s3", endpoint_url=srv.endpoint_url, aws_access_key_id=srv.access_key,
        aws_secret_access_key=srv.secret_key, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"},
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"))


_BOTO3_PUT = """
import sys, boto3
from botocore.config import Config
url, key_id, secret, bucket, key, algo = sys.argv[1:]
c = boto3.client("s3", endpoint_url=url, aws_access_key_id=key_id,
                 aws_secret_access_key=secret, region_name="us-east-1",
                 config=Config(s3={"addressing_style": "path"}))
c.put_object(Bucket=bucket, Key=key, Body=sys.stdin.buffer.read(), ChecksumAlgorithm=algo)
"""


def _put(srv, bucket: str, key: str, data: bytes, algo: str) -> str:
    """boto3 PUTs ``data`` with ``ChecksumAlgorithm=algo``, in an interpreter of its own
    (trunkline keeps botocore off awscrt in its process, and boto3 needs it for CRC32C and
    CRC64NVME); returns the value the store keeps (HEAD, checksum mode), or skips."""
    r = subprocess.run([sys.executable, "-c", _BOTO3_PUT, srv.endpoint_url, srv.access_key,
                        srv.secret_key, bucket, key, algo],
                       input=data, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    h = srv.client().head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    kept = h.get(f"Checksum{algo}")
    if not kept:
        pytest.skip(f"SeaweedFS keeps no {algo} checksum (HEAD: "
                    f"{sorted(k for k in h if k.startswith('Checksum'))})")
    return kept


@pytest.mark.parametrize("algo", ALGOS)
def test_each_stored_checksum_proves_and_finds_a_flipped_byte(aws_env, bucket, tmp_path,
                                                              algo):
    data = hashlib.shake_256(algo.encode()).digest(3 * MiB + 17)
    kept = _put(aws_env, bucket, f"{algo}/obj.bin", data, algo)
    assert kept == stored_checksum(algo, data)        # the store keeps what the algorithm says
    local = tmp_path / "obj.bin"
    local.write_bytes(data)
    r = trunkline.verify(str(tmp_path), f"s3://{bucket}/{algo}")
    assert r.ok and r.compared == 1 and not r.unverified, r
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0x01
    local.write_bytes(bytes(bad))
    r = trunkline.verify(str(tmp_path), f"s3://{bucket}/{algo}")
    assert not r.ok
    assert [str(m) for m in r.mismatches] == [f"content: obj.bin: differs ({algo.lower()})"]
    assert r.methods == {algo.lower(): 1}


def test_object_vs_object_reads_one_side_against_the_others_checksum(aws_env, bucket):
    """A single-PUT object with a CRC64NVME against a multipart copy with no checksum:
    ETags differ in shape, so one side is read and held against the other's CRC64NVME."""
    data = hashlib.shake_256(b"o2o").digest(11 * MiB + 3)
    _put(aws_env, bucket, "a/obj.bin", data, "CRC64NVME")
    c = _plain_client(aws_env)
    up = c.create_multipart_upload(Bucket=bucket, Key="b/obj.bin")
    parts = []
    for n, off in enumerate(range(0, len(data), 6 * MiB), 1):
        e = c.upload_part(Bucket=bucket, Key="b/obj.bin", UploadId=up["UploadId"],
                          PartNumber=n, Body=data[off:off + 6 * MiB])["ETag"]
        parts.append({"PartNumber": n, "ETag": e})
    c.complete_multipart_upload(Bucket=bucket, Key="b/obj.bin", UploadId=up["UploadId"],
                                MultipartUpload={"Parts": parts})
    r = trunkline.verify(f"s3://{bucket}/a", f"s3://{bucket}/b")
    assert r.ok and r.methods == {"stream-crc64nvme": 1}, r


def test_nothing_comparable_and_no_read_back_is_unverified(aws_env, bucket, tmp_path):
    """No checksum on either side, ETags of different shapes (single PUT, 2 parts): only
    reading settles it. With reading off the pair is unverified, and with
    --require-verified that fails the verify."""
    data = hashlib.shake_256(b"none").digest(7 * MiB)
    c = _plain_client(aws_env)
    c.put_object(Bucket=bucket, Key="a/x.bin", Body=data)
    assert not any(k.startswith("Checksum") and k != "ChecksumType" for k in
                   c.head_object(Bucket=bucket, Key="a/x.bin", ChecksumMode="ENABLED"))
    up = c.create_multipart_upload(Bucket=bucket, Key="b/x.bin")
    e1 = c.upload_part(Bucket=bucket, Key="b/x.bin", UploadId=up["UploadId"], PartNumber=1,
                       Body=data[:5 * MiB])["ETag"]
    e2 = c.upload_part(Bucket=bucket, Key="b/x.bin", UploadId=up["UploadId"], PartNumber=2,
                       Body=data[5 * MiB:])["ETag"]
    c.complete_multipart_upload(Bucket=bucket, Key="b/x.bin", UploadId=up["UploadId"],
                                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                                           {"PartNumber": 2, "ETag": e2}]})
    src, dst = f"s3://{bucket}/a", f"s3://{bucket}/b"
    r = trunkline.verify(src, dst)             # read back: proven
    assert r.ok and r.methods == {"stream-crc32c": 1} and not r.unverified
    r = trunkline.verify(src, dst, read=False)
    assert r.ok and r.compared == 0 and [u.name for u in r.unverified] == ["x.bin"]
    assert "no checksum" in r.unverified[0].reason or "ETag" in r.unverified[0].reason
    res = CliRunner().invoke(cli, ["verify", "--no-read", "--json", src, dst])
    assert res.exit_code == 0
    assert json.loads(res.stdout)["unverified"][0]["name"] == "x.bin"
    res = CliRunner().invoke(cli, ["verify", "--no-read", "--require-verified", src, dst])
    assert res.exit_code == 1
    assert res.stdout.startswith("unverified: x.bin: ")
    assert "UNVERIFIED" in res.stderr


def test_cp_and_verify_read_a_stored_value_the_same_way(aws_env, bucket, tmp_path):
    """The same object, the same stored SHA-256: cp's check (engine/checksums on the wire)
    and verify's (the same module over the file) agree, both ways."""
    data = hashlib.shake_256(b"agree").digest(2 * MiB + 1)
    _put(aws_env, bucket, "s/obj.bin", data, "SHA256")
    out = tmp_path / "out"
    r = trunkline.copy(f"s3://{bucket}/s/", str(out) + "/", recursive=True)
    assert r.ok and r.verified == {"sha256": 1}, r
    assert (out / "obj.bin").read_bytes() == data
    assert trunkline.verify(str(out), f"s3://{bucket}/s").ok




def test_stored_values_that_are_not_base64_are_compared_as_text():
    """b64decode without ``validate`` drops what is not of its alphabet: two stores'
    values "!!" and "??" both read as b"" and proved two objects equal."""
    from trunkline.engine.verify import _same_b64

    assert _same_b64("AAAAAA==", "AAAAAA==") and not _same_b64("AAAAAA==", "AAAAAQ==")
    assert not _same_b64("!!", "??") and not _same_b64("AA AA", "AAAA")
