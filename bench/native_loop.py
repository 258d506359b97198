"""The per-part receive loop alone: compiled (trunkline.native, lock released) vs the
Python loop, same socket, same file, same bytes.

A sender process streams SIZE bytes over loopback TCP; the receiver (this process, in a
thread per connection) runs ``recv_to_file`` with the chosen loop into a file on disk,
O_DIRECT for the aligned bulk as the mover does. Rounds alternate native / python; the
figures are medians of the receiver's CPU seconds (user, system) per GB and wall time.

    python bench/native_loop.py --size 2GiB --streams 1 --rounds 3
    python bench/native_loop.py --size 2GiB --streams 4 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from trunkline import native
from trunkline.engine.direct_io import aligned_buffer
from trunkline.physics import parse_size

SENDER = r"""
import os, socket, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
block = os.urandom(1 << 20)
left = size
while left:
    n = s.send(block[: min(len(block), left)])
    left -= n
s.close()
"""


def one_round(size: int, streams: int, use_native: bool, out: Path) -> dict:
    srv = socket.create_server(("127.0.0.1", 0), backlog=streams)
    port = srv.getsockname()[1]
    each = size // streams
    fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(fd, each * streams)
    try:
        dfd = os.open(out, os.O_WRONLY | os.O_DIRECT)
    except OSError:
        dfd = None
    senders = [subprocess.Popen([sys.executable, "-c", SENDER, str(port), str(each)])
               for _ in range(streams)]
    conns = []
    for _ in range(streams):
        c, _ = srv.accept()
        c.settimeout(30)
        conns.append(c)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    errors: list[BaseException] = []

    def recv(i: int, c: socket.socket) -> None:
        try:
            native.recv_to_file(c, fd, i * each, each, aligned_buffer(1 << 20), direct_fd=dfd,
                                native=use_native)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=recv, args=(i, c)) for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    for p in senders:
        p.wait(30)
    for c in conns:
        c.close()
    srv.close()
    os.close(fd)
    if dfd is not None:
        os.close(dfd)
    if errors:
        raise errors[0]
    gb = size / 1e9
    return {"loop": "native" if use_native else "python", "wall_s": wall,
            "gbps": size * 8 / wall / 1e9,
            "user_s_per_gb": (r1.ru_utime - r0.ru_utime) / gb,
            "sys_s_per_gb": (r1.ru_stime - r0.ru_stime) / gb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="2GiB")
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the file is written (default: a temp dir)")
    a = ap.parse_args()
    size = parse_size(a.size)
    if native._hotpath is None:
        sys.exit("trunkline.native._hotpath is not built")
    rows = []
    with tempfile.TemporaryDirectory(dir=a.dir, prefix="tl-native-") as d:
        for _ in range(a.rounds):
            for use in (True, False):
                rows.append(one_round(size, a.streams, use, Path(d) / "out.bin"))
                print(json.dumps(rows[-1]), flush=True)

    def med(loop: str, k: str) -> float:
        xs = sorted(r[k] for r in rows if r["loop"] == loop)
        return xs[len(xs) // 2]

    print(f"\nsize {a.size}, {a.streams} stream(s), {a.rounds} rounds each, loadavg "
          f"{os.getloadavg()[0]:.1f}")
    print("| loop | Gbit/s | wall s | user s/GB | sys s/GB |")
    print("| --- | --- | --- | --- | --- |")
    for loop in ("native", "python"):
        print(f"| {loop} | {med(loop, 'gbps'):.2f} | {med(loop, 'wall_s'):.2f} | "
              f"{med(loop, 'user_s_per_gb'):.3f} | {med(loop, 'sys_s_per_gb'):.3f} |")


if __name__ == "__main__":
    main()
