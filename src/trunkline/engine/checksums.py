"""Every checksum S3 stores, computed while receiving and compared per object.

Why: a store keeps whatever its uploader asked for: CRC32C, CRC32, CRC64NVME (AWS's
default for new objects), SHA-1, SHA-256, each either over the whole object (FULL_OBJECT)
or over the part checksums (COMPOSITE, ``b64-N``), and always an ETag (the MD5 of a
single-PUT object, or ``md5-of-part-md5s-N``). Checking only one of them leaves every
other object unchecked without anyone knowing. Here an object's expectation is read from
the store's headers once, the matching digest runs per part on the bytes as they arrive
(CRCs fold across parts without rereading a byte; SHA/MD5 of a whole object only when it
arrives in one GET), and the verdict is ``verified(kind)`` or ``unverified(reason)``.

Sans-I/O. CRC32C and CRC32 come from the library native/crc.py picks (ISA-L, else
google-crc32c and zlib), CRC64NVME from the compiled core or awscrt (native/crc.py too),
SHA/MD5 from hashlib; the CRC combine is ``crc_combine`` (a few lines of GF(2) arithmetic
no library exposes for all three polynomials, shared with ``integrity.crc32c_combine``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from ..native.crc import crc32, crc64nvme
from ..wire.http1 import decimal_count
from .crc_combine import CRC32, CRC32C, CRC64NVME, combine
from .integrity import crc32c

CRCS = ("crc32c", "crc32", "crc64nvme")
HASHES = ("sha256", "sha1")
ALGORITHMS = CRCS + HASHES
_HEADERS = tuple((a, f"x-amz-checksum-{a}") for a in ALGORITHMS)   # asked once per object
_POLY = {"crc32c": CRC32C, "crc32": CRC32, "crc64nvme": CRC64NVME}  # (reflected poly, width)


def crc_update(algo: str, data, value: int = 0) -> int:
    """Continue the CRC ``algo`` over ``data`` from ``value``."""
    if algo == "crc32c":
        return crc32c(data, value)
    if algo == "crc32":
        return crc32(data, value)
    if algo == "crc64nvme":
        return crc64nvme(data, value)
    raise ValueError(f"not a CRC: {algo}")


def crc_combine(algo: str, crc_a: int, crc_b: int, len_b: int) -> int:
    """CRC of A||B from CRC(A), CRC(B) and len(B) (zlib's crc32_combine, any width)."""
    return combine(_POLY[algo], crc_a, crc_b, len_b)


def crc_bytes(algo: str, value: int) -> bytes:
    return value.to_bytes(_POLY[algo][1] // 8, "big")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class Expectation:
    """What the store keeps for one object, to compare against. ``algo`` None: nothing
    comparable (``reason`` says why). ``parts``: N of a COMPOSITE checksum or a multipart
    ETag (their value is over per-part digests at the uploader's part boundaries)."""

    algo: str | None
    value: str = ""
    parts: int | None = None
    reason: str = ""

    @property
    def kind(self) -> str:
        if self.algo == "md5":
            return "md5-etag" if self.parts is None else "multipart-etag"
        return f"{self.algo}-composite" if self.parts else f"{self.algo}"


def expectation(headers: Mapping[str, str], etag: str | None, *, size: int,
                part_lengths: list[int], whole: bool) -> Expectation:
    """Choose the cheapest check the store's answer allows, for an object we fetch in
    ``part_lengths`` pieces (``whole``: one GET, so any stream digest works)."""
    ctype = headers.get("x-amz-checksum-type", "").upper()
    found = {a: headers[h] for a, h in _HEADERS if headers.get(h)}
    garbled = [a for a, v in found.items() if not _well_formed(a, v)]
    for a in garbled:   # not a value of its algorithm: nothing to compare with (fetching
        del found[a]    # again, 8 times, would not change it)
    # 1. a full-object CRC: combined from our parts whatever their boundaries
    for a in CRCS:
        v = found.get(a)
        if v and "-" not in v and ctype != "COMPOSITE":
            return Expectation(a, v)
    # 2. a full-object SHA: only when the bytes arrive in order in one GET
    for a in HASHES:
        v = found.get(a)
        if v and "-" not in v and ctype != "COMPOSITE" and whole:
            return Expectation(a, v)
    # 3. COMPOSITE checksums: comparable when our part boundaries are the uploader's
    n = len(part_lengths)
    for a in ALGORITHMS:
        v = found.get(a)
        if v and "-" in v:
            want_n = _suffix(v)
            if want_n == n and _regular(part_lengths):
                return Expectation(a, v.split("-", 1)[0], parts=n)
    # 4. the ETag: MD5 of a single PUT, or MD5 of part MD5s
    bare = (etag or "").strip().removeprefix("W/").strip('"').lower()
    if len(bare) == 32 and _hex(bare):
        if whole:
            return Expectation("md5", bare)
        return Expectation(None, reason="single-PUT MD5 ETag but fetched in ranged parts "
                                        "(a --part-size above the object size checks it)")
    if "-" in bare and len(bare.split("-", 1)[0]) == 32:
        want_n = _suffix(bare)
        if want_n == n and _regular(part_lengths) and n > 1:
            return Expectation("md5", bare.split("-", 1)[0], parts=n)
        if want_n is None:
            return Expectation(None, reason=f"an ETag that is not one: {etag[:60]!r}")
        return Expectation(None, reason=f"multipart ETag of {want_n} parts; fetched in {n}")
    if found:
        return Expectation(None, reason="store checksum over other part boundaries")
    if garbled:
        return Expectation(None, reason=f"the store's {garbled[0]} value "
                                        f"{headers[f'x-amz-checksum-{garbled[0]}'][:60]!r} "
                                        "is not one (and the ETag is opaque)")
    return Expectation(None, reason="the store keeps no checksum and an opaque ETag")


_WIDTH = {"crc32c": 4, "crc32": 4, "crc64nvme": 8, "sha256": 32, "sha1": 20}


def _well_formed(algo: str, v: str) -> bool:
    """``v`` is base64 of ``algo``'s width, with a part count ``-N`` (N >= 1) or not."""
    raw, sep, n = v.partition("-")
    if sep and not (decimal_count(n) or 0) >= 1:
        return False
    try:
        return len(base64.b64decode(raw, validate=True)) == _WIDTH[algo]
    except ValueError:
        return False


def _suffix(v: str) -> int | None:
    """N of a ``...-N`` value (a composite checksum, a multipart ETag); None if not a count."""
    _, sep, n = v.rpartition("-")
    return decimal_count(n) if sep else None


def _regular(lengths: list[int]) -> bool:
    """Equal parts but a shorter last one: the only layout a composite value fits."""
    return len(lengths) >= 1 and all(x == lengths[0] for x in lengths[:-1]) and \
        lengths[-1] <= lengths[0]


def _hex(s: str) -> bool:
    """Hex digits only (``int(s, 16)`` also takes "0x", "+" and "_")."""
    return bool(s) and all(c in "0123456789abcdefABCDEF" for c in s)


class PartDigest:
    """The digest of ``algo`` over one part's bytes, fed as they arrive (``update``), or,
    for a CRC, carried by the compiled receive loop (``crc`` in, the loop's result out)."""

    __slots__ = ("algo", "crc", "_h")

    def __init__(self, algo: str) -> None:
        self.algo = algo
        self.crc = 0      # the running CRC of a CRC algorithm
        self._h = None if algo in CRCS else hashlib.new(algo, usedforsecurity=False)

    def update(self, data) -> None:
        if self._h is not None:
            self._h.update(data)
        else:
            self.crc = crc_update(self.algo, data, self.crc)

    def value(self) -> int | bytes:
        return self._h.digest() if self._h is not None else self.crc


def needs_digest(exp: Expectation) -> str | None:
    """The extra per-part digest an expectation needs beyond CRC32C (always computed)."""
    if exp.algo is None or (exp.algo == "crc32c" and exp.parts is None):
        return None
    return exp.algo


def verdict(exp: Expectation, parts: list[tuple[int | bytes, int]]) -> bool:
    """Whether ``[(part digest, part length), ...]`` in order matches the expectation."""
    algo = exp.algo
    assert algo is not None
    if exp.parts is None and algo in CRCS:
        acc = 0
        for crc, length in parts:
            acc = crc_combine(algo, acc, int(crc), length)   # type: ignore[arg-type]
        return b64(crc_bytes(algo, acc)) == exp.value
    raw = [d if isinstance(d, bytes) else crc_bytes(algo, d) for d, _ in parts]
    if exp.parts is None:                   # a whole-object hash of one GET
        got = raw[0]
        return (got.hex() if algo == "md5" else b64(got)) == exp.value
    if algo == "md5":                       # multipart ETag: md5 of the part md5s
        return hashlib.md5(b"".join(raw), usedforsecurity=False).hexdigest() == exp.value
    cat = b"".join(raw)                     # COMPOSITE: the checksum of the part checksums
    if algo in CRCS:
        return b64(crc_bytes(algo, crc_update(algo, cat))) == exp.value
    return b64(hashlib.new(algo, cat).digest()) == exp.value
