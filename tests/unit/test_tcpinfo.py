"""TCP_INFO decoding: the one-unpack layout reads every field where a per-field read does,
and a real socket's sample is sane (a kernel struct, not made-up bytes)."""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import asdict, fields

from trunkline.wire import tcpinfo


def _per_field(raw: bytes) -> dict[str, int]:
    """The reference: each field read alone at its documented offset."""
    out = {f.name: 0 for f in fields(tcpinfo.TcpInfo)}
    for name, off, fmt in tcpinfo._FIELDS:
        if off + struct.calcsize(fmt) <= len(raw):
            out[name] = struct.unpack_from("=" + fmt, raw, off)[0]
    return out


def test_whole_layout_matches_each_field_for_any_bytes_and_length():
    assert [f.name for f in fields(tcpinfo.TcpInfo)] == [n for n, _, _ in tcpinfo._FIELDS]
    for n in (0, 1, 8, 100, 160, 168, 215, 216, 232, 300):
        for _ in range(20):
            raw = os.urandom(n)
            assert asdict(tcpinfo.decode_tcp_info(raw)) == _per_field(raw), n


def test_sample_of_a_real_connection():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    try:
        c.sendall(b"x" * 100_000)
        got = 0
        while got < 100_000:
            got += len(s.recv(65536))
        info = tcpinfo.sample(c)
        assert info is not None
        assert info.state == 1                       # TCP_ESTABLISHED
        assert info.bytes_acked >= 99_000 or info.bytes_sent >= 100_000
        assert 0 < info.snd_mss <= 65535
    finally:
        for x in (c, s, srv):
            x.close()
