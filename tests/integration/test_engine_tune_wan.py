"""The tuner closing the loop over a real emulated WAN: ranged GETs through the proxy.

A minimal driver (threads on raw keep-alive sockets; the real engine does the same job)
lets the tuner set how many workers run and how big each ranged GET is. Path: 40 ms RTT,
1 MiB window per connection (26 MB/s), 640 Mbit/s aggregate cap: one connection cannot
fill it, four can. Stated convergence: >= 85% of the cap within 4 s.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from trunkline.engine.tune import Tuner
from trunkline.testing import Proxy

MiB = 2**20
SIZE = 32 * MiB
CAP_BPS = 640e6


class Driver:
    def __init__(self, port: int, path: str, tuner: Tuner) -> None:
        self.port, self.path, self.tuner = port, path, tuner
        self.lock = threading.Lock()
        self.bytes = self.requests = 0
        self.ttfb_sum, self.ttfb_n = 0.0, 0
        self.next_part = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.work, args=(i,), daemon=True)
                        for i in range(tuner.max_connections)]

    def work(self, i: int) -> None:
        sock = None
        buf = bytearray(MiB)
        mv = memoryview(buf)
        try:
            while not self.stop.is_set():
                if i >= self.tuner.connections:
                    if sock is not None:
                        sock.close()
                        sock = None
                    time.sleep(0.02)
                    continue
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port))
                part = min(self.tuner.part_size, SIZE)
                with self.lock:
                    start = (self.next_part * part) % SIZE
                    self.next_part += 1
                end = min(start + part, SIZE) - 1
                t0 = time.monotonic()
                sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             f"Range: bytes={start}-{end}\r\n\r\n".encode())
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(65536)
                    assert chunk, "connection closed"
                    head += chunk
                ttfb = time.monotonic() - t0
                h, _, rest = head.partition(b"\r\n\r\n")
                length = int([x for x in h.split(b"\r\n")
                              if x.lower().startswith(b"content-length")][0].split(b":")[1])
                got = len(rest)
                with self.lock:
                    self.ttfb_sum += ttfb
                    self.ttfb_n += 1
                    self.bytes += got
                while got < length and not self.stop.is_set():
                    n = sock.recv_into(mv, min(len(buf), length - got))
                    assert n, "connection closed"
                    got += n
                    with self.lock:
                        self.bytes += n
                with self.lock:
                    self.requests += 1
        finally:
            if sock is not None:
                sock.close()

    def sample(self):
        with self.lock:
            ttfb = self.ttfb_sum / self.ttfb_n if self.ttfb_n else None
            self.ttfb_sum, self.ttfb_n = 0.0, 0
            return self.bytes, self.requests, ttfb


def test_tuner_converges_through_emulated_wan(s3server):
    s3server.create_bucket("tune-wan")
    c = s3server.client()
    c.put_object(Bucket="tune-wan", Key="obj", Body=os.urandom(SIZE))
    url = c.generate_presigned_url("get_object", Params={"Bucket": "tune-wan", "Key": "obj"},
                                   ExpiresIn=600)
    path = url.split(f":{s3server.port}", 1)[1]
    tuner = Tuner(max_connections=16, max_memory=256 * MiB, part_size=8 * MiB,
                  initial_connections=1, max_part_size=SIZE, interval=0.25)
    series = []
    with Proxy(("127.0.0.1", s3server.port), delay_s=0.020, window_bytes=MiB,
               rate_bps=CAP_BPS) as px:
        d = Driver(px.port, path, tuner)
        for t in d.threads:
            t.start()
        try:
            t0 = time.monotonic()
            last = (t0, 0)
            while time.monotonic() - t0 < 7.0:
                time.sleep(0.05)
                now = time.monotonic()
                b, r, ttfb = d.sample()
                tuner.observe(now, b, requests_done=r, ttfb_s=ttfb)
                if now - last[0] >= 0.5:
                    series.append((now - t0, (b - last[1]) * 8 / (now - last[0])))
                    last = (now, b)
        finally:
            d.stop.set()
            for t in d.threads:
                t.join(10)
    late = [bps for t, bps in series if t >= 4.0]
    got = sum(late) / len(late)
    log = [(round(x.at - t0, 2), x.connections, x.part_size >> 20, x.reason)
           for x in tuner.decisions]
    print(f"goodput after 4 s: {got / 1e6:.0f} Mbit/s = {got / CAP_BPS:.0%} of the cap; "
          f"connections {tuner.connections}; decisions {log}")
    assert got >= 0.85 * CAP_BPS, log
    assert 2 <= tuner.connections <= 12, log
