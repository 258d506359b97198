"""What an S3 endpoint really does, found by real requests at first contact.

Why: "S3-compatible" stores differ exactly where the mover's guarantees live. Some keep
``x-amz-checksum-*`` values, some ignore them, some refuse the header; multipart
checksums may be kept whole (FULL_OBJECT), per part (COMPOSITE, ``...-N``) or not at all;
``If-Match`` on GET may be ignored; ListObjectsV2 may not list in UTF-8 byte order; copy
calls may be missing, and a copy's ``x-amz-copy-source-if-match`` ignored (RGW 16.2); a
CRC32C trailer after an aws-chunked body may be refused, or taken unchecked. Assuming
AWS's behaviour would either fail on such a store or, worse, claim a check that never
happened. So before the first upload to an endpoint the mover asks, with a few tiny
objects under a ``.trunkline-probe-*/`` prefix that it removes again, and the answer is
cached for the process (one probe per endpoint) and on disk for ``TRUNKLINE_PROBE_TTL``
seconds (default one hour; 0: never on disk), so a short ``cp`` does not pay the
probe's half second at every start. The engine sends only checksum headers the store
accepts and reports in ``--json`` what it used (``from_cache``).

The disk cache is the state directory's (``capabilities/``, files of mode 0600, replaced
atomically); a file that does not parse as exactly what we write is ignored and the store
probed again. Its risk is a different store behind the same address within the TTL (a
store that no longer refuses a wrong CRC32C would then take a part whose file changed
during its send): keep the TTL short where endpoints are re-pointed, or set it to 0.

Probing is skipped (capabilities unknown, the engine learns from answers as before) when
``TRUNKLINE_PROBE=0`` or when the probe cannot write (read-only credentials).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import google_crc32c

from ..errors import IntegrityError, StoreError
from ..native.crc import crc64nvme
from . import s3_data

ALGORITHMS = ("crc32c", "crc32", "sha1", "sha256", "crc64nvme")
# keys whose UTF-8 byte order differs from case-folded, locale and path-aware orders:
# '-' (0x2d) < '/' (0x2f) < 'B' < 'a' < '~' < 'é' (0xc3 0xa9)
LIST_KEYS = ("a-b", "a/b", "aB", "a~", "ab", "é")
BODY = bytes(range(256)) * 4   # 1 KiB: small, and every byte value once per 256


def checksum_b64(alg: str, data: bytes) -> str:
    """The ``x-amz-checksum-<alg>`` value of ``data``: base64 of the big-endian digest."""
    if alg == "crc32c":
        raw = google_crc32c.value(data).to_bytes(4, "big")
    elif alg == "crc32":
        raw = zlib.crc32(data).to_bytes(4, "big")
    elif alg == "crc64nvme":
        raw = crc64nvme(data).to_bytes(8, "big")
    else:
        raw = hashlib.new(alg, data).digest()
    return base64.b64encode(raw).decode()


_PARAM = {"crc32c": "ChecksumCRC32C", "crc32": "ChecksumCRC32", "sha1": "ChecksumSHA1",
          "sha256": "ChecksumSHA256", "crc64nvme": "ChecksumCRC64NVME"}


@dataclass(frozen=True)
class ChecksumSupport:
    """How a store treats one ``x-amz-checksum-*`` header on a single PUT."""

    accepted: bool   # a PUT with the right value succeeded
    verified: bool   # a PUT with a wrong value was refused (the store computes it)
    kept: bool       # HEAD with checksum mode returns the value (later readers can check)


@dataclass
class Capabilities:
    """The measured behaviour of one endpoint; None where it could not be measured."""

    endpoint: str
    checksums: dict[str, ChecksumSupport] = field(default_factory=dict)
    multipart_full_object: bool | None = None  # CreateMultipartUpload FULL_OBJECT accepted
    multipart_checksum: str | None = None      # kept after a CRC32C multipart upload:
    #                                            "full-object", "composite" or "none"
    if_match_get: bool | None = None           # GET with a wrong If-Match answers 412
    list_order: str | None = None              # "utf8-binary" or what came instead
    list_pages: bool | None = None             # continuation tokens give the same order
    copy_object: bool | None = None
    upload_part_copy: bool | None = None
    copy_if_match: bool | None = None          # a copy naming another ETag of its source
    #                                            (x-amz-copy-source-if-match) answers 412
    trailer_crc32c: bool | None = None         # a CRC32C trailing an aws-chunked body is
    #                                            checked: the right one stored exactly, a
    #                                            wrong one refused (streams pass through)
    seconds: float = 0.0
    error: str | None = None                   # why probing stopped, if it did
    probed_at: float = 0.0                     # when (epoch seconds)
    from_cache: bool = False                   # read from the state dir, not probed now

    def accepts(self, alg: str) -> bool | None:
        c = self.checksums.get(alg)
        return None if c is None else c.accepted

    def to_dict(self) -> dict:
        d = asdict(self)
        d["checksums"] = {k: asdict(v) for k, v in self.checksums.items()}
        d["seconds"] = round(self.seconds, 4)
        d["probed_at"] = round(self.probed_at, 3)
        return d


_cache: dict[tuple, Capabilities] = {}
_cache_lock = threading.Lock()


def enabled() -> bool:
    return os.environ.get("TRUNKLINE_PROBE", "1") not in ("0", "off", "no")


DEFAULT_TTL_S = 3600.0


def ttl_s() -> float:
    """How long a probe's answer is reused from disk (``TRUNKLINE_PROBE_TTL``, seconds)."""
    raw = os.environ.get("TRUNKLINE_PROBE_TTL")
    if raw is None or not raw.strip():
        return DEFAULT_TTL_S
    try:
        v = float(raw)
    except ValueError:
        return 0.0   # unreadable: the safe side is no reuse
    return v if v > 0 and v == v else 0.0


def for_endpoint(ep, bucket: str, full: bool = False) -> Capabilities:
    """The capabilities of ``ep`` (an S3Endpoint) in ``bucket``: from the process cache,
    else from the state dir while younger than ``ttl_s()``, else probed (and kept in
    both). ``full=False`` measures only what the engine acts on (CRC32C on PUT, multipart
    checksums: a handful of requests)."""
    key = (ep.identity, full)
    with _cache_lock:
        hit = _cache.get(key) or _cache.get((ep.identity, True))
    if hit is not None:
        return hit
    name = f"{ep.scheme}://{ep.host}:{ep.port}"
    path = _disk_path(ep.identity, bucket)
    caps = _load(path, name, full)
    if caps is None:
        caps = probe(ep.client, bucket, name=name, full=full, ep=ep)
        _save(path, caps, full)
    with _cache_lock:
        _cache.setdefault(key, caps)
        return _cache[key]


def forget(disk: bool = True) -> None:
    """Drop the process cache and (``disk``) this state dir's disk cache (tests that
    restart a store on the same port)."""
    with _cache_lock:
        _cache.clear()
    d = _disk_dir() if disk else None
    if d is not None and d.is_dir():
        for f in d.glob("*.json"):
            f.unlink(missing_ok=True)


# ------------------------------------------------------------------- the disk cache

_FORMAT = 3   # 2: trailer_crc32c; 3: copy_if_match
_MAX_FILE = 64 * 1024


def _disk_dir():
    if ttl_s() <= 0:
        return None
    from ..config import default_state_dir

    return default_state_dir() / "capabilities"


def _disk_path(identity: tuple, bucket: str):
    d = _disk_dir()
    if d is None:
        return None
    h = hashlib.sha256(json.dumps([list(map(str, identity)), bucket]).encode()).hexdigest()
    return d / f"{h[:32]}.json"


def _load(path, name: str, full: bool) -> Capabilities | None:
    """The cached answer for ``name`` if fresh and exactly of our shape, else None."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_FILE + 1)
        if len(raw) > _MAX_FILE:
            return None
        d = json.loads(raw)
        caps = from_dict(d["capabilities"])
        age = time.time() - float(d["probed_at"])
        if (d["format"] != _FORMAT or d["endpoint"] != name or caps.endpoint != name
                or not (0 <= age < ttl_s()) or (full and not d["full"])):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    caps.probed_at = float(d["probed_at"])
    caps.from_cache = True
    caps.seconds = 0.0
    return caps


def _save(path, caps: Capabilities, full: bool) -> None:
    """Keep a complete probe's answer (one that stopped early is not kept); never fatal."""
    if path is None or caps.error is not None:
        return
    body = json.dumps({"format": _FORMAT, "endpoint": caps.endpoint, "full": full,
                       "probed_at": caps.probed_at, "capabilities": caps.to_dict()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _opt_bool(v) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    raise TypeError("not a bool")


def _opt_str(v) -> str | None:
    if v is None or isinstance(v, str):
        return v
    raise TypeError("not a string")


def from_dict(d: dict) -> Capabilities:
    """A ``Capabilities`` from ``to_dict``'s output, every field checked for its type
    (a cache file, or what a cluster driver sends its workers: input, anything else
    raises)."""
    sums = {}
    for alg, v in d["checksums"].items():
        if alg not in ALGORITHMS or set(v) != {"accepted", "verified", "kept"}:
            raise ValueError(alg)
        if not all(isinstance(v[k], bool) for k in v):
            raise TypeError(alg)
        sums[alg] = ChecksumSupport(v["accepted"], v["verified"], v["kept"])
    endpoint = d["endpoint"]
    if not isinstance(endpoint, str):
        raise TypeError("endpoint")
    return Capabilities(
        endpoint=endpoint, checksums=sums,
        multipart_full_object=_opt_bool(d["multipart_full_object"]),
        multipart_checksum=_opt_str(d["multipart_checksum"]),
        if_match_get=_opt_bool(d["if_match_get"]), list_order=_opt_str(d["list_order"]),
        list_pages=_opt_bool(d["list_pages"]), copy_object=_opt_bool(d["copy_object"]),
        upload_part_copy=_opt_bool(d["upload_part_copy"]),
        copy_if_match=_opt_bool(d["copy_if_match"]),
        trailer_crc32c=_opt_bool(d["trailer_crc32c"]), error=_opt_str(d["error"]))


# ------------------------------------------------------------------------- the probe


def _status(e: Exception) -> int:
    return int(getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _kept(client, bucket: str, key: str, alg: str) -> str | None:
    h = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    return h["ResponseMetadata"]["HTTPHeaders"].get(f"x-amz-checksum-{alg}")


def _probe_checksum(client, bucket: str, prefix: str, alg: str) -> ChecksumSupport:
    key = f"{prefix}sum-{alg}"
    good = checksum_b64(alg, BODY)
    try:
        client.put_object(Bucket=bucket, Key=key, Body=BODY, **{_PARAM[alg]: good})
    except Exception as e:  # noqa: BLE001 - a refusal is the answer
        if _status(e) in (400, 501):
            return ChecksumSupport(False, False, False)
        raise
    kept = _kept(client, bucket, key, alg) == good
    wrong = checksum_b64(alg, BODY + b"x")
    try:
        client.put_object(Bucket=bucket, Key=key + "-bad", Body=BODY, **{_PARAM[alg]: wrong})
        verified = False
    except Exception as e:  # noqa: BLE001
        if _status(e) not in (400, 422):
            raise
        verified = True
    return ChecksumSupport(True, verified, kept)


def _probe_multipart(client, bucket: str, prefix: str) -> tuple[bool, str]:
    """(FULL_OBJECT accepted, what is kept): one part of 1 KiB (a last part may be small).
    A store that refuses the checksum on CreateMultipartUpload altogether: "refused"."""
    key = f"{prefix}multipart"
    part_crc = checksum_b64("crc32c", BODY)
    up = None
    for kind in ("FULL_OBJECT", "COMPOSITE"):
        try:
            up = client.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32C",
                                                ChecksumType=kind)["UploadId"]
            break
        except Exception as e:  # noqa: BLE001
            if _status(e) not in (400, 501):
                raise
    if up is None:
        return False, "refused"
    full = kind == "FULL_OBJECT"
    try:
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=BODY,
                                  ChecksumCRC32C=part_crc)["ETag"]
        kw = {"ChecksumCRC32C": part_crc, "ChecksumType": "FULL_OBJECT"} if full else {}
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag,
                                        "ChecksumCRC32C": part_crc}]}, **kw)
    except Exception:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=up)
        raise
    got = _kept(client, bucket, key, "crc32c")
    if not got:
        return full, "none"
    if got == part_crc:
        return full, "full-object"
    return full, "composite" if "-" in got else f"other ({got})"


def _probe_trailer(ep, client, bucket: str, prefix: str) -> bool:
    """Whether a PUT whose CRC32C trails its body (aws-chunked framing,
    ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``) is stored exactly, and one whose trailer is
    wrong refused. Both, or a stream does not pass parts through to this store: a store
    that takes the framing but skips the trailer would keep what it never checked, and
    one that ignores the framing would keep the chunk's frame as the object's bytes."""
    key = f"{prefix}trailer"
    crc = google_crc32c.value(BODY)

    def put(k: str, value: int) -> None:
        conn = ep.new_connection()
        try:
            s3_data.put(ep, conn, bucket, k, k, length=len(BODY),
                        send_body=lambda c: c.send(BODY), trailer=lambda: value)
        finally:
            conn.close()

    try:
        put(key, crc)
    except IntegrityError:   # the right trailer refused as damaged: the store sums
        return False         # the frame with the body, so no trailer can pass
    except StoreError as e:
        if e.status in (400, 403, 411, 501):   # the framing, or its literal, refused
            return False
        raise
    if client.get_object(Bucket=bucket, Key=key)["Body"].read() != BODY:
        return False
    try:
        put(key + "-bad", crc ^ 1)
    except IntegrityError:   # refused as damaged (s3_data.TRAILER_MISMATCH)
        return True
    except StoreError as e:
        if e.status in (400, 422):
            return True
        raise
    return False


def _probe_if_match(client, bucket: str, prefix: str) -> bool:
    key = f"{prefix}if-match"
    etag = client.put_object(Bucket=bucket, Key=key, Body=BODY)["ETag"]
    client.get_object(Bucket=bucket, Key=key, IfMatch=etag)["Body"].read()
    try:
        client.get_object(Bucket=bucket, Key=key, IfMatch='"0123456789abcdef"')["Body"].read()
        return False
    except Exception as e:  # noqa: BLE001
        if _status(e) != 412:
            raise
        return True


def _probe_list(client, bucket: str, prefix: str) -> tuple[str, bool]:
    base = f"{prefix}list/"
    for k in LIST_KEYS:
        client.put_object(Bucket=bucket, Key=base + k, Body=b"")
    want = sorted(LIST_KEYS, key=lambda k: k.encode())
    got = [o["Key"][len(base):] for o in
           client.list_objects_v2(Bucket=bucket, Prefix=base).get("Contents", ())]
    paged: list[str] = []
    token = None
    for _ in range(len(LIST_KEYS) + 2):   # bounded: a store that loops cannot hang us
        kw = {"ContinuationToken": token} if token else {}
        r = client.list_objects_v2(Bucket=bucket, Prefix=base, MaxKeys=2, **kw)
        paged += [o["Key"][len(base):] for o in r.get("Contents", ())]
        token = r.get("NextContinuationToken")
        if not r.get("IsTruncated") or not token:
            break
    order = "utf8-binary" if got == want else "other: " + " ".join(got)
    return order, paged == got


_OTHER_ETAG = '"0123456789abcdef0123456789abcdef"'


def _probe_copy(client, bucket: str, prefix: str) -> tuple[bool, bool, bool | None]:
    """(CopyObject works, UploadPartCopy works, a copy naming another ETag of its source
    is refused with 412): without the last, a multipart copy's parts could come from two
    versions, so the mover checks the source's ETag before completing one (ops/copy.py)."""
    src = f"{prefix}copy-src"
    client.put_object(Bucket=bucket, Key=src, Body=BODY)
    try:
        client.copy_object(Bucket=bucket, Key=f"{prefix}copy-if", CopySourceIfMatch=_OTHER_ETAG,
                           CopySource={"Bucket": bucket, "Key": src})
        if_match: bool | None = False
    except Exception as e:  # noqa: BLE001
        if_match = True if _status(e) == 412 else None
    try:
        client.copy_object(Bucket=bucket, Key=f"{prefix}copy-dst",
                           CopySource={"Bucket": bucket, "Key": src})
        whole = client.get_object(Bucket=bucket, Key=f"{prefix}copy-dst")["Body"].read() == BODY
    except Exception as e:  # noqa: BLE001
        if _status(e) not in (400, 403, 404, 405, 501):
            raise
        whole = False
    key = f"{prefix}copy-part"
    up = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    try:
        r = client.upload_part_copy(Bucket=bucket, Key=key, UploadId=up, PartNumber=1,
                                    CopySource={"Bucket": bucket, "Key": src},
                                    CopySourceRange="bytes=0-99")
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}]})
        part = client.get_object(Bucket=bucket, Key=key)["Body"].read() == BODY[:100]
    except Exception as e:  # noqa: BLE001
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=up)
        if _status(e) not in (400, 403, 404, 405, 501):
            raise
        part = False
    return whole, part, if_match if whole else None


def _cleanup(client, bucket: str, prefix: str, pool: ThreadPoolExecutor) -> None:
    """Remove every probe object and upload (bounded: the probe made a few dozen), and
    those of probes killed before their own clean-up. Each removal at once on ``pool``:
    a far store's round trip is paid once, not once per object (at 20 ms, ~0.1 s)."""
    uploads = pool.submit(client.list_multipart_uploads, Bucket=bucket, Prefix=prefix)
    stale = pool.submit(_remove_stale, client, bucket)
    for _ in range(3):
        r = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        keys = [o["Key"] for o in r.get("Contents", ())]
        _all(pool.submit(client.delete_object, Bucket=bucket, Key=k) for k in keys)
        if not keys:
            break
    _all(pool.submit(client.abort_multipart_upload, Bucket=bucket, Key=u["Key"],
                     UploadId=u["UploadId"]) for u in uploads.result().get("Uploads", ()))
    stale.result()


def _all(futures: Iterable[Future]) -> None:
    """Wait for every one; then raise the first failure, if any."""
    done = list(futures)
    for f in done:
        f.exception()
    for f in done:
        f.result()


def apply(ep, caps: Capabilities) -> dict:
    """Tell the engine's endpoint what works (it sends no checksum header the store
    refuses, asks FULL_OBJECT multipart checksums only where accepted); returns what the
    engine will use, for ``--json``."""
    crc = caps.accepts("crc32c")
    if crc is not None:
        ep.supports_crc32c = crc
    if "crc32c" in caps.checksums:
        ep.verifies_crc32c = caps.checksums["crc32c"].verified
    if caps.multipart_full_object is not None:
        ep.full_object_crc = caps.multipart_full_object if crc is not False else False
    ep.trailer_crc32c = caps.trailer_crc32c is True
    return {
        "put_checksum": "crc32c" if ep.supports_crc32c is not False else None,
        "multipart_checksum": "FULL_OBJECT crc32c" if ep.full_object_crc is not False
        and ep.supports_crc32c is not False else None,
        "store_keeps_crc32c": caps.checksums["crc32c"].kept if "crc32c" in caps.checksums
        else None,
        "store_verifies_crc32c": caps.checksums["crc32c"].verified
        if "crc32c" in caps.checksums else None,
        "trailing_crc32c": ep.trailer_crc32c,
    }


STALE_S = 600.0
# a probe's prefix names its owner: a digest of the host name and the process id, so a later
# run on the same host removes what a killed probe left at once (its process is gone)
# instead of waiting STALE_S; keys are listing input, so only this exact shape is trusted
_OWNED = re.compile(r"\.trunkline-probe-([0-9a-f]{8})p([0-9]{1,10})-[0-9a-f]{12}/")


def is_probe_key(key: str) -> bool:
    """Whether ``key`` is one of a probe's own short-lived objects (the exact shape only):
    ``sync`` and ``verify`` pass them by, since a probe may run while they list."""
    return key.startswith(".trunkline-probe-") and _OWNED.match(key) is not None


def _host_tag() -> str:
    """This host and pid namespace: two containers may share a host name, and a process
    id is only meaningful in its own namespace (another's live probe must not look dead)."""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{ns}".encode()).hexdigest()[:8]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or not a pid we can ask about: keep
    return True


def _stale(key: str, when: float, cutoff: float) -> bool:
    """Whether a probe key is left over: older than the cutoff, or owned by a process of
    this host that no longer runs."""
    if when < cutoff:
        return True
    m = _OWNED.match(key)
    return bool(m and m.group(1) == _host_tag() and int(m.group(2)) != os.getpid()
                and not _alive(int(m.group(2))))


def _remove_stale(client, bucket: str) -> None:
    """Objects and uploads of probes killed before their own clean-up (kill -9 during
    the first second of a run): those older than ``STALE_S``, and at once those of this
    host's processes that are gone. One LIST, bounded to one page."""
    cutoff = time.time() - STALE_S
    r = client.list_objects_v2(Bucket=bucket, Prefix=".trunkline-probe-", MaxKeys=200)
    for o in r.get("Contents", ()):
        if _stale(o["Key"], o["LastModified"].timestamp(), cutoff):
            client.delete_object(Bucket=bucket, Key=o["Key"])
    ups = client.list_multipart_uploads(Bucket=bucket, Prefix=".trunkline-probe-")
    for u in ups.get("Uploads", ()):
        if _stale(u["Key"], u["Initiated"].timestamp(), cutoff):
            client.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])


def probe(client, bucket: str, name: str = "", full: bool = True, ep=None) -> Capabilities:
    """Measure the capabilities of the store behind ``client`` (botocore, with
    ``request_checksum_calculation='when_required'``) in ``bucket``. Never raises: what
    could not be measured stays None and ``error`` says why. ``full=False``: only CRC32C
    and the multipart checksum (what the engine acts on). ``ep`` (the same store's
    S3Endpoint) adds the trailing checksum, which only our own connections send."""
    t0 = time.monotonic()
    caps = Capabilities(endpoint=name, probed_at=time.time())
    prefix = f".trunkline-probe-{_host_tag()}p{os.getpid()}-{uuid.uuid4().hex[:12]}/"
    try:
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe") as pool:
            sums = {a: pool.submit(_probe_checksum, client, bucket, prefix, a)
                    for a in (ALGORITHMS if full else ("crc32c",))}
            groups = [("multipart", pool.submit(_probe_multipart, client, bucket, prefix))]
            if ep is not None:
                groups.append(("trailer", pool.submit(_probe_trailer, ep, client, bucket,
                                                      prefix)))
            if full:
                groups += [("if-match", pool.submit(_probe_if_match, client, bucket, prefix)),
                           ("list", pool.submit(_probe_list, client, bucket, prefix)),
                           ("copy", pool.submit(_probe_copy, client, bucket, prefix))]
            errors = []
            for a, f in sums.items():
                try:
                    caps.checksums[a] = f.result()
                except Exception as e:  # noqa: BLE001
                    errors.append(f"{a}: {e}")
            for what, f in groups:
                try:
                    r = f.result()
                except Exception as e:  # noqa: BLE001
                    errors.append(f"{what}: {e}")
                    continue
                if what == "multipart":
                    caps.multipart_full_object, caps.multipart_checksum = r
                elif what == "if-match":
                    caps.if_match_get = r
                elif what == "list":
                    caps.list_order, caps.list_pages = r
                elif what == "trailer":
                    caps.trailer_crc32c = r
                else:
                    caps.copy_object, caps.upload_part_copy, caps.copy_if_match = r
            if errors:
                caps.error = "; ".join(errors)
    finally:
        try:
            with ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe-cleanup") as pool:
                _cleanup(client, bucket, prefix, pool)
        except Exception as e:  # noqa: BLE001 - reported, never fatal
            caps.error = (caps.error + "; " if caps.error else "") + f"cleanup: {e}"
    caps.seconds = time.monotonic() - t0
    return caps
