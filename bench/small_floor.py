"""The floor of a small-object download in Python (issue 18): the system calls the engine
makes per object and nothing else, beside which ``trunkline cp`` is measured.

Each of ``--threads`` threads holds one keep-alive connection to the nginx origin of
``client_bound.py`` and, per object: sends a GET, receives the head and the body into a
1 MiB buffer, sums the body with CRC32C (``trunkline.native.crc``), creates a file
(O_EXCL), reserves and writes it, fsyncs it and renames it into place. ``--features``
adds trunkline's own pieces one by one: ``sign`` (SigV4, ``storage.sigv4.sign``),
``parse`` (``wire.http1.parse_response_head``), ``stamp`` (the xattr and mtime a finished
download gets). What it leaves out on purpose: retries, the tuner, progress, the journal,
the live guard, every check but the length. So the gap between this and ``trunkline cp``
on the same origin is the engine's own cost per object, not the kernel's.

    python bench/small_floor.py --objects 3000 --threads 2 --rounds 3 --features sign,parse,stamp
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import client_bound as cb  # noqa: E402
from common import _free_port  # noqa: E402
from nginx_origin import NginxOrigin, write_listing  # noqa: E402

from trunkline.native.crc import crc32c  # noqa: E402
from trunkline.storage.sigv4 import Keys, sign  # noqa: E402
from trunkline.wire.http1 import parse_response_head  # noqa: E402

KEYS = Keys("bench", "bench-secret")


def fetch_all(port: int, prefix: str, keys: list[str], dst: str, threads: int,
              features: set[str]) -> tuple[float, float, float]:
    """Download ``keys`` into ``dst`` -> (wall, user, sys) seconds of this process."""
    it = iter(keys)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            s = socket.create_connection(("127.0.0.1", port))
            buf = bytearray(1 << 20)
            mv = memoryview(buf)
            dfd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
            while True:
                with lock:
                    k = next(it, None)
                if k is None:
                    break
                path = f"/{cb.BUCKET}/{prefix}/{k}"
                head = {"Host": f"127.0.0.1:{port}"}
                if "sign" in features:
                    head = sign("GET", path, "", dict(head, **{"x-amz-checksum-mode": "ENABLED"}),
                                KEYS, "us-east-1")
                s.sendall((f"GET {path} HTTP/1.1\r\n"
                           + "".join(f"{a}: {b}\r\n" for a, b in head.items()) + "\r\n").encode())
                got, end = 0, -1
                while end < 0:
                    n = s.recv_into(mv[got:])
                    if not n:
                        raise ConnectionError("closed")
                    got += n
                    end = buf.find(b"\r\n\r\n", 0, got)
                if "parse" in features:
                    parsed = parse_response_head(bytes(buf[:got]))
                    assert parsed is not None
                    length = int(parsed[0].headers["content-length"])
                else:
                    text = bytes(buf[:end]).decode("latin-1").lower()
                    length = int(text.split("content-length:")[1].split("\r\n")[0])
                body = end + 4
                have = got - body
                while have < length:
                    n = s.recv_into(mv[body + have: body + length])
                    if not n:
                        raise ConnectionError("closed")
                    have += n
                crc32c(mv[body: body + length])
                name = ".part-" + k
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644,
                             dir_fd=dfd)
                os.posix_fallocate(fd, 0, length)
                os.pwrite(fd, mv[body: body + length], 0)
                if "stamp" in features:
                    try:
                        os.setxattr(fd, "user.trunkline", b'{"etag":"x","size":262144}')
                    except OSError:
                        pass
                    os.utime(fd, (1.7e9, 1.7e9))
                os.fsync(fd)
                os.rename(name, k, src_dir_fd=dfd, dst_dir_fd=dfd)
                os.close(fd)
            s.close()
            os.close(dfd)
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    if errors:
        raise errors[0]
    return wall, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=3000)
    ap.add_argument("--size", type=int, default=256 * 1024)
    ap.add_argument("--threads", default="1,2", help="comma list")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--features", action="append", default=None,
                    help="comma list of sign,parse,stamp; repeat for several variants")
    ap.add_argument("--dst-root", default="/dev/shm")
    a = ap.parse_args()
    variants = [set(filter(None, f.split(","))) for f in (a.features or [""])]
    cb.DATASETS["floor"] = cb.Dataset("floor", a.objects, a.size)
    with tempfile.TemporaryDirectory(prefix="tl-small-floor-") as d:
        work = Path(d)
        work.chmod(0o755)   # nginx's workers run as an unprivileged user and must read it
        root = work / "origin"
        gen = cb.generate_dataset(cb.DATASETS["floor"], root / cb.BUCKET / "floor")
        write_listing(root, cb.BUCKET, "floor")
        keys = sorted(gen.sizes)
        with NginxOrigin(root, cb.BUCKET, _free_port()) as origin:
            port = int(origin.endpoint_url.rsplit(":", 1)[1])
            print("| features | threads | round | objects/s | user ms/object | sys ms/object |")
            print("| --- | --- | --- | --- | --- | --- |")
            for r in range(a.rounds):
                for threads in (int(t) for t in a.threads.split(",")):
                    for feats in variants:
                        dst = Path(a.dst_root) / f"tl-small-floor-{os.getpid()}"
                        shutil.rmtree(dst, ignore_errors=True)
                        dst.mkdir()
                        wall, user, sys_s = fetch_all(port, "floor", keys, str(dst), threads,
                                                      feats)
                        ok = all((dst / k).stat().st_size == n for k, n in gen.sizes.items())
                        shutil.rmtree(dst, ignore_errors=True)
                        if not ok:
                            sys.exit("a file is missing or short")
                        print(f"| {','.join(sorted(feats)) or '-'} | {threads} | {r} | "
                              f"{a.objects / wall:,.0f} | {user / a.objects * 1e3:.3f} | "
                              f"{sys_s / a.objects * 1e3:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
