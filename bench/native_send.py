"""An upload part's send loop alone: what reading, summing and sending costs the sender.

A file of SIZE bytes (in the page cache: written once, read before the first round) is
sent over loopback TCP to a drain process that discards it. The part is summed first
(its CRC32C goes in the request head), then sent; the ways compared:

- ``old``: the upload path before issue 18: a Python loop of ``preadv`` + CRC32C per MiB,
  then ``os.sendfile`` per MiB;
- ``sendfile``: ``native.file_crc`` (one C call, lock released), then ``os.sendfile``
  per 8 MiB slice (page cache -> socket, no copy in user space, nothing summed);
- ``summed``: ``native.file_crc``, then ``native.file_to_sock`` per 8 MiB slice (read,
  sum, send in C: the bytes sent are summed again and held against the first sum).

Rounds alternate the ways; medians of the sender's CPU seconds per GB.

    python bench/native_send.py --size 1GiB --rounds 5
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trunkline import native
from trunkline.engine.direct_io import aligned_buffer
from trunkline.native.crc import crc32c
from trunkline.physics import parse_size

DRAIN = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buf = bytearray(1 << 20)
while s.recv_into(buf):
    pass
"""
SLICE = 8 << 20


def send(way: str, fd: int, sock: socket.socket, size: int, buf: memoryview) -> int:
    if way == "old":
        crc = 0
        off = 0
        while off < size:
            k = os.preadv(fd, [buf[: min(len(buf), size - off)]], off)
            crc = crc32c(buf[:k], crc)
            off += k
        for off in range(0, size, 1 << 20):
            n, o = min(1 << 20, size - off), off
            while n:
                w = os.sendfile(sock.fileno(), fd, o, n)
                n, o = n - w, o + w
        return crc
    crc = native.file_crc(fd, 0, size, buf)
    if way == "sendfile":
        for off in range(0, size, SLICE):
            n, o = min(SLICE, size - off), off
            while n:
                w = os.sendfile(sock.fileno(), fd, o, n)
                n, o = n - w, o + w
        return crc
    sent = 0
    for off in range(0, size, SLICE):
        sent = native.file_to_sock(fd, sock, off, min(SLICE, size - off), buf, crc=sent)
    assert sent == crc
    return crc


def one_round(way: str, path: Path, size: int) -> dict:
    srv = socket.create_server(("127.0.0.1", 0))
    drain = subprocess.Popen([sys.executable, "-c", DRAIN, str(srv.getsockname()[1])])
    sock, _ = srv.accept()
    sock.settimeout(None)   # blocking, a kernel send timeout: as the mover's connections
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 30, 0))
    fd = os.open(path, os.O_RDONLY)
    buf = aligned_buffer(1 << 20)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    send(way, fd, sock, size, buf)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    sock.close()
    drain.wait(30)
    srv.close()
    os.close(fd)
    gb = size / 1e9
    return {"way": way, "wall_s": wall, "user_s_per_gb": (r1.ru_utime - r0.ru_utime) / gb,
            "sys_s_per_gb": (r1.ru_stime - r0.ru_stime) / gb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ways", default="old,sendfile,summed")
    a = ap.parse_args()
    size = parse_size(a.size)
    ways = a.ways.split(",")
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tl-send-") as d:
        path = Path(d) / "src.bin"
        with open(path, "wb") as f:
            for _ in range(size >> 20):
                f.write(os.urandom(1 << 20))
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
        for r in range(a.rounds):
            for way in ways if r % 2 == 0 else reversed(ways):
                rows.append(one_round(way, path, size))

    def med(way: str, k: str) -> float:
        xs = sorted(x[k] for x in rows if x["way"] == way)
        return xs[len(xs) // 2]

    print(f"size {a.size}, {a.rounds} rounds, load average {load0} -> {os.getloadavg()}")
    print("| way | wall s | user s/GB | sys s/GB | CPU s/GB |")
    print("| --- | --- | --- | --- | --- |")
    for way in ways:
        u, s = med(way, "user_s_per_gb"), med(way, "sys_s_per_gb")
        print(f"| {way} | {med(way, 'wall_s'):.2f} | {u:.3f} | {s:.3f} | {u + s:.3f} |")


if __name__ == "__main__":
    main()
