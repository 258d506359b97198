"""CRC32C over any buffer, without a copy, by the fastest well-kept library on the host.

Why here: the compiled receive loop (``_hotpath``) and the Python loops must checksum with
the same implementation; this module picks it once, for both. The engine imports
``crc32c`` from here. In order of preference (``TRUNKLINE_CRC32C`` pins one):

- ``isal``: Intel ISA-L's ``crc32_iscsi`` (Debian ``libisal2``; Ceph's CRC32C). A
  multi-binary dispatcher: folding with VPCLMULQDQ on AVX-512 hosts (~3x the next one in
  cache, measured in bench/RESULTS.md), three interleaved ``crc32`` streams elsewhere.
- ``google``: the C library google-crc32c links (three interleaved ``crc32`` streams).
- ``python``: google-crc32c's extension module (a copy into ``bytes`` per call).

Every CRC32C of the project is the usual finalised value (``google_crc32c.value``); ISA-L
keeps its register uninverted, so it is called as ``~crc32_iscsi(buf, n, ~value)``.

CRC-32 (zlib's, the ``x-amz-checksum-crc32`` that AWS's SDKs put on objects by default)
follows the same choice: ISA-L's ``crc32_gzip_refl`` (zlib's convention, ~15x zlib here)
with ``isal``, ``zlib.crc32`` otherwise.

CRC64NVME (what S3 computes for every new object): the compiled core's own folding
(``crc64nvme.c``, why there) where the CPU has carry-less multiplication, awscrt
otherwise (its table-only fallback is 20x slower than awscrt's).
"""

from __future__ import annotations

import ctypes
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import google_crc32c

from ..errors import UsageError

try:
    from . import _hotpath
except ImportError:  # built without a compiler
    _hotpath = None

EXTEND = 1
"""Convention of a ``crc32c_extend(crc, buf, size_t n)`` function (google's)."""
ISCSI = 2
"""Convention of a ``crc32_iscsi(buf, int n, register)`` function (ISA-L's)."""

_ISAL_CHUNK = 1 << 30
"""ISA-L takes an ``int`` length: longer buffers go in pieces of this size."""


def _isal(name: str, argtypes: tuple) -> Callable | None:
    """Function ``name`` of ISA-L (its CPU dispatcher), or None where libisal is absent."""
    try:   # ISA-L's soname on every distribution that ships it (loaded once by the loader)
        fn = getattr(ctypes.CDLL("libisal.so.2"), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_uint32
    return fn


def _load_libcrc32c() -> Callable[[int, int, int], int] | None:
    """The C library google-crc32c itself links (SSE4.2/ARMv8 CRC instructions).

    Called through ctypes it takes any buffer by address (bytearray, memoryview, mmap)
    without a copy and runs with the GIL released; the extension module only takes
    ``bytes``. None when the library cannot be found.
    """
    if google_crc32c.implementation != "c":
        return None
    here = Path(google_crc32c.__file__).resolve().parent
    for cand in sorted(here.parent.glob("google_crc32c.libs/libcrc32c*.so*")):
        try:
            fn = ctypes.CDLL(str(cand)).crc32c_extend
        except (OSError, AttributeError):
            continue
        fn.argtypes = (ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t)
        fn.restype = ctypes.c_uint32
        return fn
    return None


def _choose() -> tuple[str, Callable | None, int]:
    """-> (backend name, its C function, its convention); ``TRUNKLINE_CRC32C`` pins one
    (``auto``, the default, takes the first found of isal, google, python)."""
    want = os.environ.get("TRUNKLINE_CRC32C", "auto").strip().lower() or "auto"
    if want not in ("auto", "isal", "google", "python"):
        raise UsageError(f"TRUNKLINE_CRC32C={want!r}: expected auto, isal, google or python")
    if want in ("auto", "isal"):
        # crc32_iscsi(buf, int n, register)
        fn = _isal("crc32_iscsi", (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32))
        if fn is not None:
            return "isal", fn, ISCSI
        if want == "isal":
            raise UsageError("TRUNKLINE_CRC32C=isal but libisal.so.2 (Debian libisal2) "
                             "was not found")
    if want in ("auto", "google"):
        fn = _load_libcrc32c()
        if fn is not None:
            return "google", fn, EXTEND
    return "python", None, 0


BACKEND, _c_fn, CONVENTION = _choose()
"""Which library computes every CRC32C of this process (``isal``, ``google``, ``python``)."""

_crc32_fn = (_isal("crc32_gzip_refl", (ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint64))
             if BACKEND == "isal" else None)
"""ISA-L's ``crc32_gzip_refl(value, buf, uint64 n)`` (zlib's convention) where ISA-L is the
choice; else ``zlib.crc32``."""


def c_function() -> tuple[int, int]:
    """(address, convention) of the chosen C function, for the compiled core; (0, 0)
    when there is none (the core then uses its own)."""
    if _c_fn is None:
        return 0, 0
    return ctypes.cast(_c_fn, ctypes.c_void_p).value or 0, CONVENTION


def crc32_function() -> int:
    """Address of ISA-L's ``crc32_gzip_refl`` for the compiled core; 0 where CRC-32 is
    zlib's (the core then leaves a second CRC-32 to the Python loop)."""
    if _crc32_fn is None:
        return 0
    return ctypes.cast(_crc32_fn, ctypes.c_void_p).value or 0


def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32 (zlib's polynomial and convention) of ``data``, continuing from ``value``."""
    mv = memoryview(data)
    if _crc32_fn is None or mv.nbytes < 4096 or not mv.c_contiguous:
        return zlib.crc32(mv if mv.c_contiguous else mv.tobytes(), value)
    addr = _address(data, mv.cast("B"))
    if addr is None:                   # read-only and not bytes: zlib takes it as it is
        return zlib.crc32(mv, value)
    return _crc32_fn(value, addr, mv.nbytes)


def _address(data: object, mv: memoryview) -> int | None:
    """Address of the first byte of ``mv`` (a contiguous byte view of ``data``) without a
    copy, for a ctypes call; None for a read-only buffer that is not ``bytes``."""
    if type(data) is bytes:
        return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0
    if mv.readonly:
        return None
    return ctypes.addressof((ctypes.c_char * mv.nbytes).from_buffer(mv))


def _numpy_address(data: memoryview) -> int:
    import numpy as np  # only for the address of a read-only, non-bytes buffer

    return int(np.frombuffer(data, dtype=np.uint8).ctypes.data)


def _at(address: int, n: int, value: int) -> int:
    """The chosen C function over ``n`` bytes at ``address``, from ``value``."""
    if CONVENTION == EXTEND:
        return _c_fn(value, address, n)
    reg = ~value & 0xFFFFFFFF
    while n:
        k = min(n, _ISAL_CHUNK)
        reg = _c_fn(address, k, reg)
        address += k
        n -= k
    return ~reg & 0xFFFFFFFF


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from ``value`` (a previous result).

    Zero-copy for bytearray/memoryview/mmap (the engine receives into reused buffers);
    the GIL is released (ctypes), so worker threads hash in parallel.
    """
    if _c_fn is None:
        return google_crc32c.extend(value, bytes(data))
    if type(data) is bytes and (CONVENTION == EXTEND or len(data) < 4096):
        return google_crc32c.extend(value, data)   # google's module: no ctypes call
    mv = memoryview(data)
    if mv.ndim != 1 or mv.itemsize != 1 or not mv.c_contiguous:
        mv = mv.cast("B") if mv.c_contiguous else memoryview(mv.tobytes())
    n = mv.nbytes
    if n == 0:
        return value
    addr = _address(data, mv)
    if addr is not None:
        return _at(addr, n, value)
    try:   # the compiled core takes a read-only buffer as it is (and uses the same library)
        from ._hotpath import crc32c as hot
    except ImportError:
        return _at(_numpy_address(mv), n, value)
    return hot(mv, value)


def crc64_native() -> bool:
    """Whether the compiled core sums CRC64NVME at speed here (PCLMULQDQ folding): the
    receive loop then carries it beside the CRC32C."""
    return _hotpath is not None and bool(_hotpath.CLMUL_CRC64)


def crc64nvme(data, value: int = 0) -> int:
    """CRC64NVME of ``data`` (any buffer; a strided view is copied), continuing from
    ``value``."""
    if isinstance(data, memoryview) and not data.c_contiguous:
        data = data.tobytes()
    if crc64_native():
        return _hotpath.crc64nvme(data, value)
    from awscrt import checksums  # lazily: only objects stored with CRC64NVME need it

    try:
        return checksums.crc64nvme(data, value)
    except TypeError:   # an awscrt (the floor is 0.23) that takes bytes only
        return checksums.crc64nvme(bytes(data), value)
