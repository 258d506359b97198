"""CRC32C libraries side by side (issue 18): what native/crc.py can pick, per buffer size.

    python bench/crc32c_libs.py --rounds 7

Method. One process; each library is called through ctypes on the same random buffer
(``bytearray``, so by address, no copy), the libraries alternating within each round:
ISA-L's ``crc32_iscsi`` (its CPU dispatcher), google-crc32c's ``crc32c_extend``, and the
compiled core's own (``_hotpath.use_crc32c(0, 0)``: one stream of the ``crc32``
instruction). Each timed call sums ``--bytes`` in total at one buffer size; a small
buffer is summed again and again (it stays in the cache), a large one is not. Medians of
GB/s (decimal) over the rounds, and the load average before and after.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from pathlib import Path

from common import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from trunkline.native import _hotpath, crc  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--bytes", type=int, default=2 << 30, help="summed per timed call")
    ap.add_argument("--sizes", default="65536,262144,1048576,16777216,268435456")
    a = ap.parse_args()
    isal = crc._isal("crc32_iscsi", (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32))
    google = crc._load_libcrc32c()
    if isal is None or google is None:
        sys.exit("needs both libisal.so.2 (Debian libisal2) and google-crc32c's C library")
    sizes = [int(s) for s in a.sizes.split(",")]
    bufs = {n: bytearray(os.urandom(n)) for n in sizes}
    want = {n: crc.crc32c(bytes(b)) for n, b in bufs.items()}

    def run_isal(b: bytearray, addr: int, n: int) -> int:
        return ~isal(addr, n, 0xFFFFFFFF) & 0xFFFFFFFF

    def run_google(b: bytearray, addr: int, n: int) -> int:
        return google(0, addr, n)

    def run_own(b: bytearray, addr: int, n: int) -> int:
        _hotpath.use_crc32c(0, 0)
        try:
            return _hotpath.crc32c(b)
        finally:
            _hotpath.use_crc32c(*crc.c_function())

    libs = {"isal": run_isal, "google": run_google, "own (1 stream)": run_own}
    print(f"load before: {os.getloadavg()}")
    res: dict[tuple[str, int], list[float]] = {}
    for r in range(a.rounds):
        names = list(libs)
        names = names[r % len(names):] + names[:r % len(names)]
        for n in sizes:
            b = bufs[n]
            addr = ctypes.addressof((ctypes.c_char * n).from_buffer(b))
            reps = max(1, a.bytes // n)
            for name in names:
                fn = libs[name]
                t = time.perf_counter()
                for _ in range(reps):
                    got = fn(b, addr, n)
                dt = time.perf_counter() - t
                if got != want[n]:
                    sys.exit(f"{name} gave {got:#x} for {n} bytes, want {want[n]:#x}")
                res.setdefault((name, n), []).append(reps * n / dt / 1e9)
    print(f"load after: {os.getloadavg()}")
    print("| library | " + " | ".join(f"{n // 1024} KiB" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name in libs:
        print(f"| {name} | " + " | ".join(f"{median(res[(name, n)]):.1f}" for n in sizes) + " |")
    print("GB/s, medians of", a.rounds, "rounds")


if __name__ == "__main__":
    main()
