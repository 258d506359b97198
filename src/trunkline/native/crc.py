"""CRC32C over any buffer, without a copy: the C library google-crc32c itself links.

Why here: the compiled receive loop (``_hotpath``) and the Python loops must checksum with
the same well-kept implementation (SSE4.2/ARMv8 instructions, three interleaved streams);
this module finds it once, for both. The engine imports ``crc32c`` from here.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import google_crc32c


def _load_libcrc32c():
    """The C library google-crc32c itself links (SSE4.2/ARMv8 CRC instructions).

    Called through ctypes it takes any buffer by address (bytearray, memoryview, mmap)
    without a copy and runs with the GIL released; the extension module only takes
    ``bytes``. None when the library cannot be found: we then copy into bytes.
    """
    here = Path(google_crc32c.__file__).resolve().parent
    for cand in sorted(here.parent.glob("google_crc32c.libs/libcrc32c*.so*")):
        try:
            lib = ctypes.CDLL(str(cand))
            fn = lib.crc32c_extend
        except (OSError, AttributeError):
            continue
        fn.argtypes = (ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t)
        fn.restype = ctypes.c_uint32
        return fn
    return None


_c_extend = _load_libcrc32c() if google_crc32c.implementation == "c" else None


def _address(data: memoryview) -> int:
    import numpy as np  # only for the address of a read-only, non-bytes buffer

    return int(np.frombuffer(data, dtype=np.uint8).ctypes.data)


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from ``value`` (a previous result).

    Zero-copy for bytearray/memoryview/mmap (the engine receives into reused buffers);
    the GIL is released for large buffers, so worker threads hash in parallel.
    """
    if type(data) is bytes:
        return google_crc32c.extend(value, data)
    mv = memoryview(data)
    if mv.ndim != 1 or mv.itemsize != 1 or not mv.c_contiguous:
        mv = mv.cast("B") if mv.c_contiguous else memoryview(mv.tobytes())
    n = mv.nbytes
    if n == 0:
        return value
    if _c_extend is None:
        return google_crc32c.extend(value, mv.tobytes())
    if not mv.readonly:
        buf = (ctypes.c_char * n).from_buffer(mv)
        return _c_extend(value, ctypes.addressof(buf), n)
    try:   # the compiled core takes a read-only buffer as it is (and uses the same library)
        from ._hotpath import crc32c as hot
    except ImportError:
        return _c_extend(value, _address(mv), n)
    return hot(mv, value)
