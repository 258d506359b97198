"""Our SigV4 signer against botocore's on the same requests: identical canonical form,
identical signature (botocore is the reference the stores agree with)."""

from __future__ import annotations

import time

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.storage import sigv4

NOW = 1764355200.0 + 12345   # a fixed instant: both signers see the same clock


def botocore_signed(method, host, path, qs, headers, keys, region, now, trailer=False):
    """botocore's S3SigV4Auth (payload signing off, as trunkline's data plane) at ``now``;
    ``trailer``: as its flexible-checksum handler marks a body whose checksum trails it."""
    url = f"http://{host}{path}" + (f"?{qs}" if qs else "")
    req = AWSRequest(method=method, url=url, headers=dict(headers, Host=host))
    req.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    if trailer:
        req.context["checksum"] = {"request_algorithm": {"in": "trailer",
                                                         "algorithm": "crc32c"}}
    auth = S3SigV4Auth(Credentials(*keys), "s3", region)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    req.context["timestamp"] = stamp
    auth._modify_request_before_signing(req)
    canonical = auth.canonical_request(req)
    sig = auth.signature(auth.string_to_sign(req, canonical), req)
    auth._inject_signature_to_request(req, sig)
    return dict(req.headers.items())


KEYS = [sigv4.Keys("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        sigv4.Keys("ak", "sk", "FwoGZXIvYXdzEJr//////////token=")]


@pytest.mark.parametrize("keys", KEYS, ids=["static", "session-token"])
@pytest.mark.parametrize("method,path,query,headers", [
    ("GET", "/bucket/key", None, {"Range": "bytes=0-1023", "If-Match": '"abc"'}),
    ("PUT", "/b/dir/a%20b%2Bc~", {"partNumber": "7", "uploadId": "x/y+z=="},
     {"Content-Length": "5", "x-amz-checksum-crc32c": "AAAAAA=="}),
    ("HEAD", "/b/k", {"partNumber": "1"}, {"x-amz-checksum-mode": "ENABLED"}),
    ("GET", "/b/", {"list-type": "2", "prefix": "a b/ü", "encoding-type": "url",
                    "max-keys": "1000", "continuation-token": "tok+/="}, {}),
    ("GET", "/b/k", None, {"User-Agent": "x", "X-Spaced": "  a   b  "}),
])
def test_same_signature_as_botocore(keys, method, path, query, headers):
    host = "127.0.0.1:8333"
    qs = sigv4.canonical_query(query)
    ours = sigv4.sign(method, path, qs, dict(headers, Host=host), keys, "eu-west-3", now=NOW)
    ref = botocore_signed(method, host, path, qs, headers, tuple(keys), "eu-west-3", NOW)
    assert ours == ref
    assert ours["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=" + keys.access_key)


@settings(max_examples=60, deadline=None)
@given(key=st.text(min_size=1, max_size=30), qv=st.text(max_size=20),
       region=st.sampled_from(["us-east-1", "ap-south-2"]))
def test_any_key_and_query_signs_as_botocore(key, qv, region):
    from urllib.parse import quote

    path = "/bkt/" + quote(key, safe="/~")
    qs = sigv4.canonical_query({"prefix": qv, "list-type": "2"})
    ours = sigv4.sign("GET", path, qs, {"Host": "h:1"}, KEYS[0], region, now=NOW)
    ref = botocore_signed("GET", "h:1", path, qs, {}, tuple(KEYS[0]), region, NOW)
    assert ours["Authorization"] == ref["Authorization"]


def test_signature_depends_on_every_signed_part():
    base = dict(method="GET", path="/b/k", query="", headers={"Host": "h", "Range": "bytes=0-1"},
                keys=KEYS[0], region="us-east-1")
    ref = sigv4.sign(**base, now=NOW)["Authorization"]
    for change in ({"path": "/b/K"}, {"region": "us-east-2"}, {"query": "a=b"},
                   {"headers": {"Host": "h", "Range": "bytes=0-2"}},
                   {"keys": sigv4.Keys("AKIDEXAMPLE", "other")}):
        assert sigv4.sign(**{**base, **change}, now=NOW)["Authorization"] != ref, change
    assert sigv4.sign(**base, now=NOW + 1)["Authorization"] != ref
    assert "wJalr" not in repr(KEYS[0])


@pytest.mark.parametrize("keys", KEYS, ids=["static", "session-token"])
def test_a_trailing_checksum_payload_signs_as_botocore_does(keys):
    """A PUT whose CRC32C trails an aws-chunked body signs the literal
    STREAMING-UNSIGNED-PAYLOAD-TRAILER where UNSIGNED-PAYLOAD goes otherwise, as botocore
    signs a request its flexible-checksum handler sends with a trailer."""
    host = "127.0.0.1:8333"
    headers = {"Content-Length": "1048", "Content-Encoding": "aws-chunked",
               "x-amz-decoded-content-length": "1024", "x-amz-trailer": "x-amz-checksum-crc32c"}
    qs = sigv4.canonical_query({"partNumber": "2", "uploadId": "u"})
    ours = sigv4.sign("PUT", "/b/k", qs, dict(headers, Host=host), keys, "us-east-1", now=NOW,
                      payload=sigv4.TRAILER_PAYLOAD)
    ref = botocore_signed("PUT", host, "/b/k", qs, headers, tuple(keys), "us-east-1", NOW,
                          trailer=True)
    assert ours == ref
    assert ours["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
