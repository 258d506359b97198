"""Capability detection, measured on each store: which checksum headers are accepted,
verified and kept, what a multipart upload keeps, If-Match, ListObjectsV2 order, copy.

``MEASURED`` is what each store does; every cell of the measured table in docs/stores.md
comes from it, and ``test_docs_table_matches_measurements`` keeps the two equal, so the
document cannot claim what these tests do not assert.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import trunkline
from trunkline.config import resolve_endpoint
from trunkline.engine.plan import MiB
from trunkline.storage import capabilities
from trunkline.storage.capabilities import ALGORITHMS, checksum_b64, crc64nvme, probe
from trunkline.storage.s3 import S3Endpoint
from trunkline.testing.refusing_proxy import RefusingProxy

ALL = set(ALGORITHMS)
MEASURED = {
    "seaweedfs": {"accepted": ALL, "verified": ALL, "kept": ALL,
                  "multipart_full_object": True, "multipart_checksum": "full-object",
                  "if_match_get": True, "list_utf8_order": False, "list_pages": True,
                  "copy_object": True, "upload_part_copy": True, "copy_if_match": True,
                  "trailer_crc32c": True},
    "rgw": {"accepted": ALL, "verified": set(), "kept": set(),
            "multipart_full_object": True, "multipart_checksum": "none",
            "if_match_get": True, "list_utf8_order": True, "list_pages": True,
            "copy_object": True, "upload_part_copy": True, "copy_if_match": False,
            "trailer_crc32c": False},
    "juicefs": {"accepted": ALL, "verified": set(), "kept": set(),
                "multipart_full_object": True, "multipart_checksum": "none",
                "if_match_get": True, "list_utf8_order": True, "list_pages": True,
                "copy_object": True, "upload_part_copy": True, "copy_if_match": True,
                "trailer_crc32c": False},
}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "stores.md"


def _summary(c: capabilities.Capabilities) -> dict:
    return {
        "accepted": {a for a, s in c.checksums.items() if s.accepted},
        "verified": {a for a, s in c.checksums.items() if s.verified},
        "kept": {a for a, s in c.checksums.items() if s.kept},
        "multipart_full_object": c.multipart_full_object,
        "multipart_checksum": c.multipart_checksum,
        "if_match_get": c.if_match_get,
        "list_utf8_order": c.list_order == "utf8-binary",
        "list_pages": c.list_pages,
        "copy_object": c.copy_object,
        "upload_part_copy": c.upload_part_copy,
        "copy_if_match": c.copy_if_match,
        "trailer_crc32c": c.trailer_crc32c,
    }


@pytest.fixture
def store_name(request) -> str:
    return request.node.callspec.params["store"]


def _bucket(srv) -> str:
    b = f"caps-{uuid.uuid4().hex[:10]}"
    srv.create_bucket(b)
    return b


def test_probe_measures_each_store(store_env, store_name):
    store = store_env
    b = _bucket(store)
    ep = S3Endpoint(resolve_endpoint("s3"))   # the trailer goes on our own connections
    try:
        c = probe(store.client(), b, store_name, ep=ep)
    finally:
        ep.close()
    assert c.error is None, c.error
    assert _summary(c) == MEASURED[store_name]
    # the probe leaves nothing behind: no object, no upload
    cl = store.client()
    assert not cl.list_objects_v2(Bucket=b).get("Contents")
    assert not cl.list_multipart_uploads(Bucket=b).get("Uploads")


def test_cp_json_reports_capabilities_used(store_env, store_name, tmp_path):
    capabilities.forget()
    b = _bucket(store_env)
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(11 * MiB))
    r = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "cp", "--json",
                        "--part-size", "5M", str(f), f"s3://{b}/f.bin"],
                       env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    caps = json.loads(r.stdout)["capabilities"]
    want = MEASURED[store_name]
    assert caps["used"]["put_checksum"] == "crc32c"
    assert caps["used"]["store_keeps_crc32c"] == ("crc32c" in want["kept"])
    assert caps["store"]["multipart_checksum"] == want["multipart_checksum"]
    assert caps["used"]["trailing_crc32c"] is want["trailer_crc32c"]
    # checked by the store only where it refuses a wrong CRC32C; elsewhere it took any
    # value, and the summary says so instead of claiming a check
    out = json.loads(r.stdout)
    if "crc32c" in want["verified"]:
        assert out["verified"] == {"crc32c-by-store": 1} and out["unverified"] == [], out
    else:
        assert out["verified"] == {} and len(out["unverified"]) == 1, out
        assert "takes any CRC32C" in out["unverified"][0]["reason"], out["unverified"]
    body = store_env.client().get_object(Bucket=b, Key="f.bin")["Body"].read()
    assert body == f.read_bytes()


def test_engine_sends_no_header_a_store_refuses(aws_env, tmp_path, monkeypatch):
    """Behind a front that answers 400 to every checksum header, the probe learns it and
    the engine's own requests carry none: every refusal seen is the probe's."""
    capabilities.forget()
    b = _bucket(aws_env)
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.bin").write_bytes(os.urandom(3000))
    (src / "multi.bin").write_bytes(os.urandom(11 * MiB + 1))
    with RefusingProxy(("127.0.0.1", aws_env.port)) as px:
        monkeypatch.setenv("AWS_ENDPOINT_URL", px.endpoint_url)
        r = trunkline.copy(str(src), f"s3://{b}/r/", recursive=True, part_size="5M")
        assert r.ok, r.failures
        store = r.capabilities["store"]
        assert store["checksums"]["crc32c"]["accepted"] is False
        assert store["multipart_checksum"] == "refused"
        assert r.capabilities["used"] == {"put_checksum": None, "multipart_checksum": None,
                                          "store_keeps_crc32c": False,
                                          "store_verifies_crc32c": False,
                                          "trailing_crc32c": False}
        probe_refusals = len(px.refused)
        # PUT crc32c, FULL_OBJECT and COMPOSITE multipart, a PUT with a CRC32C trailer
        assert probe_refusals == 4
        assert px.passed > 0
        r2 = trunkline.copy(str(src), f"s3://{b}/r2/", recursive=True, part_size="5M")
        assert r2.ok, r2.failures
        assert len(px.refused) == probe_refusals   # cached: no second probe, no refusal
    c = aws_env.client()
    for k in ("r/small.bin", "r/multi.bin", "r2/multi.bin"):
        name = k.split("/")[1]
        assert c.get_object(Bucket=b, Key=k)["Body"].read() == (src / name).read_bytes()
    capabilities.forget()


def test_a_store_that_refuses_every_trailer_as_damage_is_sent_none(aws_env, monkeypatch):
    """A store that sums an aws-chunked body with its frame refuses the right trailer as
    damaged (400 BadDigest). The probe's answer is then "no trailers", cached like any
    other, not an error that probes again at every run; a stream to it goes through
    buffers and is byte-identical."""
    capabilities.forget()
    b = _bucket(aws_env)
    data = os.urandom(11 * MiB + 3)
    aws_env.client().put_object(Bucket=b, Key="src.bin", Body=data)
    with RefusingProxy(("127.0.0.1", aws_env.port), refuse="trailers") as px:
        monkeypatch.setenv("AWS_ENDPOINT_URL", px.endpoint_url)
        for k in ("one.bin", "two.bin"):
            r = trunkline.copy(f"s3://{b}/src.bin", f"s3://{b}/{k}", server_side=False,
                               part_size="5M")
            assert r.ok, r.failures
            store = r.capabilities["store"]
            assert store["trailer_crc32c"] is False and store["error"] is None, store
            assert r.capabilities["used"]["trailing_crc32c"] is False
        assert px.refused == [px.refused[0]] and px.refused[0].startswith("PUT ")  # probed once
    for k in ("one.bin", "two.bin"):
        assert aws_env.client().get_object(Bucket=b, Key=k)["Body"].read() == data
    capabilities.forget()


def test_probe_off_and_probe_without_write_access(aws_env, tmp_path, monkeypatch):
    capabilities.forget()
    monkeypatch.setenv("TRUNKLINE_PROBE", "0")
    b = _bucket(aws_env)
    f = tmp_path / "x.bin"
    f.write_bytes(b"x" * 100)
    r = trunkline.copy(str(f), f"s3://{b}/x.bin")
    assert r.ok and r.capabilities == {}
    # a probe that cannot write (credentials the store refuses) measures nothing, says
    # why, and never raises: the engine then learns from answers as before
    import botocore.session

    bad = botocore.session.get_session().create_client(
        "s3", endpoint_url=aws_env.endpoint_url, aws_access_key_id="nobody",
        aws_secret_access_key="wrong", region_name="us-east-1")
    c = probe(bad, b)
    assert c.error and c.checksums == {} and c.multipart_checksum is None


def test_crc64nvme_reference():
    assert crc64nvme(b"123456789") == 0xAE8B14860A799888   # the catalogue's check value
    awscrt = pytest.importorskip("awscrt.checksums")
    data = os.urandom(1000)
    assert crc64nvme(data) == awscrt.crc64nvme(data)
    assert checksum_b64("crc32c", b"") == "AAAAAA=="


def _docs_rows() -> dict[str, dict[str, str]]:
    """The measured table of docs/stores.md: {feature: {store: cell}}."""
    text = DOCS.read_text()
    table = text.split("<!-- measured -->")[1].split("<!-- /measured -->")[0]
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")]
            for ln in table.strip().splitlines() if ln.startswith("|")]
    header, body = rows[0], rows[2:]
    return {r[0]: dict(zip(header[1:4], r[1:4], strict=True)) for r in body}


def _cell(m: dict, feature: str) -> str:
    yes = {True: "yes", False: "no"}
    algs = lambda s: ", ".join(a for a in ALGORITHMS if a in s) or "none"  # noqa: E731
    return {
        "checksum headers accepted": algs(m["accepted"]),
        "checksum verified (bad value refused)": algs(m["verified"]),
        "checksum kept (HEAD checksum mode)": algs(m["kept"]),
        "FULL_OBJECT multipart accepted": yes[m["multipart_full_object"]],
        "multipart checksum kept": m["multipart_checksum"],
        "If-Match on GET (412)": yes[m["if_match_get"]],
        "ListObjectsV2 in UTF-8 byte order": yes[m["list_utf8_order"]],
        "continuation pages keep the order": yes[m["list_pages"]],
        "CopyObject": yes[m["copy_object"]],
        "UploadPartCopy": yes[m["upload_part_copy"]],
        "copy refused on another source ETag (x-amz-copy-source-if-match, 412)":
            yes[m["copy_if_match"]],
        "CRC32C trailer checked (aws-chunked; a wrong one refused)": yes[m["trailer_crc32c"]],
    }[feature]


def test_docs_table_matches_measurements():
    rows = _docs_rows()
    names = {"SeaweedFS": "seaweedfs", "Ceph RGW": "rgw", "JuiceFS": "juicefs"}
    assert len(rows) == 12
    for feature, cells in rows.items():
        for col, cell in cells.items():
            want = _cell(MEASURED[names[re.sub(r"\s*\(.*\)", "", col)]], feature)
            assert cell == want, (feature, col)
