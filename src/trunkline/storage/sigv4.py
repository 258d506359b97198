"""SigV4 request signing for the data plane, without importing botocore.

Why our own: every request trunkline sends on its own connections (GET, PUT, HEAD, LIST)
needs a signed head, and ``botocore.auth`` pulls in most of botocore (~0.1 s of a short
copy's start-up, measured with ``python -X importtime``). The algorithm is small and
fixed (AWS's "Signature Version 4": a canonical request, a string to sign, an HMAC
chain); this is it for S3 with ``UNSIGNED-PAYLOAD``, the form ``S3SigV4Auth`` produces
when payload signing is off, and ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` (the same
signature over another payload literal: a body framed as aws-chunked whose CRC32C comes
in a trailer after it). tests/unit/test_sigv4.py holds it against botocore's signer
on the same requests, and every integration test against a real store exercises it.
Credential chains (profiles, SSO, instance roles) stay botocore's (``storage/s3.py``).
Sans-I/O: values in, headers out; the clock is a parameter.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import NamedTuple
from urllib.parse import quote

__all__ = ["Keys", "canonical_query", "sign"]

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
TRAILER_PAYLOAD = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
_UNSIGNED = frozenset(("baggage", "connection", "expect", "keep-alive", "proxy-authenticate",
                       "proxy-authorization", "te", "traceparent", "tracestate", "trailer",
                       "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id"))
"""Headers a proxy may change on the way: never signed (botocore's list)."""


class Keys(NamedTuple):
    """Frozen credentials: what a signature needs (never printed: no __repr__ of values)."""

    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:
        return "Keys(...)"


def canonical_query(query: dict[str, str] | None) -> str:
    """The query string, URI-encoded and sorted as SigV4 wants it (and sent as such)."""
    if not query:
        return ""
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in query.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


_key_cache: dict[tuple[str, str, str, str], bytes] = {}


def _signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """The derived key (one per secret, day, region): four HMACs, cached."""
    ck = (secret, day, region, service)
    k = _key_cache.get(ck)
    if k is None:
        k = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
        for part in (region, service, "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        if len(_key_cache) > 64:     # bounded: a long run crosses days, keys rotate
            _key_cache.clear()
        _key_cache[ck] = k
    return k


def sign(method: str, path: str, query: str, headers: dict[str, str], keys: Keys,
         region: str, *, service: str = "s3", now: float | None = None,
         payload: str = UNSIGNED_PAYLOAD) -> dict[str, str]:
    """``headers`` plus X-Amz-Date, X-Amz-Security-Token (temporary keys),
    X-Amz-Content-SHA256 and Authorization, in botocore's order. ``path`` is the already
    encoded path (S3: not normalised), ``query`` the output of ``canonical_query``;
    ``headers`` must hold Host; ``payload`` is the X-Amz-Content-SHA256 literal."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    out = {k: v for k, v in headers.items()
           if k.lower() not in ("authorization", "x-amz-date", "date",
                                "x-amz-security-token", "x-amz-content-sha256")}
    out["X-Amz-Date"] = stamp
    if keys.token:
        out["X-Amz-Security-Token"] = keys.token
    out["X-Amz-Content-SHA256"] = payload
    signed: dict[str, list[str]] = {}
    for name, value in out.items():
        low = name.lower()
        if low not in _UNSIGNED:
            signed.setdefault(low, []).append(" ".join(value.split()))
    names = sorted(signed)
    canon = "\n".join((method.upper(), path, query,
                       "".join(f"{n}:{','.join(signed[n])}\n" for n in names),
                       ";".join(names), payload))
    day = stamp[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(("AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canon.encode()).hexdigest()))
    sig = hmac.digest(_signing_key(keys.secret_key, day, region, service), to_sign.encode(),
                      "sha256").hex()   # the one-shot C path: no HMAC object per request
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={keys.access_key}/{scope}, "
                            f"SignedHeaders={';'.join(names)}, Signature={sig}")
    return out
