"""The minimum-rate guard against a server that trickles its bytes (hostile_s3's
``slow_trickle``): a body slower than --min-rate for its window fails as retryable, on a
closed connection, in the compiled receive loop and in the Python one alike; time the
reader itself lags never counts."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import trunkline
from trunkline import native
from trunkline.cli.main import cli
from trunkline.engine.plan import MiB
from trunkline.errors import TooSlow, UsageError
from trunkline.options import DEFAULTS, TransferOptions
from trunkline.storage.partial import is_partial_name
from trunkline.testing.hostile_s3 import HostileS3
from trunkline.wire.speed_guard import SpeedGuard

SIZE = 6 * MiB + 777


@pytest.fixture
def hostile(monkeypatch):
    # 512 bytes every 0.25 s: ~2 KiB/s, a read timeout (bytes keep coming) never fires
    with HostileS3(trickle_piece=512, trickle_pause=0.25) as s:
        for k, v in s.env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("TRUNKLINE_CONFIG", "/nonexistent/trunkline.toml")
        yield s


def _data(n: int) -> bytes:
    return hashlib.shake_256(b"min-rate").digest(n)


def _cp(dst: Path, **kw):
    kw = {"part_size": "5MiB", "retries": 2, "read_timeout": 5, "connections": 2,
          "min_rate": "8K,1.5s", **kw}
    return trunkline.copy("s3://b/d/", str(dst) + "/", recursive=True, **kw)


@pytest.fixture(params=["native", "python"])
def loop(request, monkeypatch):
    if request.param == "native":
        if not native.NATIVE:
            pytest.skip("the compiled receive loop is not built")
    else:
        monkeypatch.setattr(native, "NATIVE", False)
    return request.param


def test_a_trickle_fails_its_try_and_the_retry_heals_it(hostile, tmp_path, loop):
    data = _data(SIZE)
    hostile.put("b", "d/big.bin", data)
    hostile.set_mode("slow_trickle", times=1)
    t0 = time.monotonic()
    r = _cp(tmp_path)
    took = time.monotonic() - t0
    assert hostile.struck == 1, "the trickle never struck: the test proves nothing"
    assert r.ok, r.failures
    assert r.retries >= 1
    assert (tmp_path / "big.bin").read_bytes() == data
    assert not [p for p in tmp_path.iterdir() if is_partial_name(p.name)]
    # the trickle of a 5 MiB part would take ~45 min; the guard ended it in its window
    assert took < 20, f"took {took:.1f}s"


def test_a_persistent_trickle_fails_clearly_with_nothing_at_the_final_name(hostile, tmp_path,
                                                                           loop):
    hostile.put("b", "d/big.bin", _data(SIZE))
    hostile.set_mode("slow_trickle")
    r = _cp(tmp_path, retries=1)
    assert not r.ok
    assert [f.name for f in r.failures] == ["s3://b/d/big.bin"]
    assert "below 8192 B/s" in r.failures[0].error and "--min-rate" in r.failures[0].error
    assert not (tmp_path / "big.bin").exists()


def test_without_the_guard_a_trickle_is_only_slow(hostile, tmp_path):
    """The control: the same trickle with --min-rate 0 is still running after the
    window the guard would have used (a small object, so the test ends)."""
    data = _data(6000)
    hostile.put("b", "d/small.bin", data)
    hostile.set_mode("slow_trickle")
    t0 = time.monotonic()
    r = _cp(tmp_path, min_rate=0)
    assert r.ok and r.retries == 0, r.failures
    assert time.monotonic() - t0 > 2.0        # 12 pieces of 512 bytes, 0.25 s apart
    assert (tmp_path / "small.bin").read_bytes() == data


def test_cli_takes_the_rate_and_its_window(hostile, tmp_path):
    hostile.put("b", "d/big.bin", _data(SIZE))
    hostile.set_mode("slow_trickle")
    res = CliRunner().invoke(cli, ["cp", "-r", "-q", "--retries", "0", "--part-size", "5MiB",
                                   "--min-rate", "8K,1.5s", "s3://b/d/", str(tmp_path) + "/"])
    assert res.exit_code == 1
    assert "below 8192 B/s" in res.output


def test_option_parsing_and_a_default_far_below_a_healthy_rate():
    assert DEFAULTS.min_rate_pair == (1024.0, 60.0)
    assert TransferOptions(min_rate="64K,10s").min_rate_pair == (65536.0, 10.0)
    assert TransferOptions(min_rate="1Mbit", min_rate_window=5).min_rate_pair == (125000.0, 5.0)
    assert TransferOptions(min_rate=0).min_rate_pair is None
    with pytest.raises(UsageError):
        TransferOptions(min_rate="8K,0s")
    with pytest.raises(UsageError):
        TransferOptions(min_rate="fast")


# -- the guard alone, on a real TCP pair -------------------------------------------------


class _Watched:
    """The surface the guard watches (a Connection's), over a real loopback socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.stats = type("S", (), {"bytes_in": 0})()
        self.pending = 0
        self.why = ""

    def too_slow(self, why: str) -> None:
        self.why = why
        socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


def _tcp_pair():
    srv = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    srv.close()
    return a, b


def test_time_the_reader_lags_never_counts_against_the_server():
    """Bytes waiting unread in the receive queue (a --bwlimit, a slow disk) mean the
    reader is the slow side: the guard holds even though nothing moves for its window."""
    reader, writer = _tcp_pair()
    guard = SpeedGuard(1 << 20, 0.6, tick=0.1)
    w = _Watched(reader)
    try:
        writer.sendall(b"x" * 100_000)     # arrives, and is never read
        guard.watch(w)
        time.sleep(1.5)
        assert w.why == "" and guard.fired == 0
    finally:
        guard.close()
        reader.close()
        writer.close()


def test_a_blocked_read_is_ended_by_the_guard_within_its_window():
    reader, writer = _tcp_pair()
    guard = SpeedGuard(4096, 0.6, tick=0.1)
    w = _Watched(reader)
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            try:
                writer.sendall(b"y" * 16)
            except OSError:
                return
            time.sleep(0.05)

    th = threading.Thread(target=trickle, daemon=True)
    th.start()
    try:
        guard.watch(w)
        t0 = time.monotonic()
        got = 0
        while True:                        # a reader that keeps up with every byte
            n = len(reader.recv(65536))
            if n == 0:
                break
            got += n
        took = time.monotonic() - t0
        assert got > 0 and guard.fired == 1
        assert "below 4096 B/s" in w.why
        assert 0.5 < took < 3.0, took
    finally:
        stop.set()
        guard.close()
        reader.close()
        writer.close()
        th.join(timeout=2)


def test_too_slow_is_a_retryable_network_error():
    from trunkline.errors import NetworkError, is_retryable

    assert issubclass(TooSlow, NetworkError) and is_retryable(TooSlow("x"))
