"""The embedded Ceph RGW and JuiceFS gateway: serve S3, then leave nothing behind."""

from __future__ import annotations

import socket

import pytest

from conftest import require_tool


def _refused(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) != 0


def _round_trip(srv) -> None:
    c = srv.client()
    srv.create_bucket("life")
    c.put_object(Bucket="life", Key="a b/ü.txt", Body=b"x" * 1000)
    assert c.get_object(Bucket="life", Key="a b/ü.txt")["Body"].read() == b"x" * 1000
    keys = [o["Key"] for o in c.list_objects_v2(Bucket="life")["Contents"]]
    assert keys == ["a b/ü.txt"]


def _assert_gone(srv, procs, data_dir, port) -> None:
    assert all(p.poll() is not None for p in procs), "a server process outlived stop()"
    assert not data_dir.exists(), "the temporary directory was left behind"
    assert _refused(srv.host, port), "the S3 port still answers"


def test_juicefs_serves_and_cleans_up():
    require_tool("juicefs")
    from trunkline.testing.embedded_juicefs import EmbeddedJuiceFS

    with EmbeddedJuiceFS() as srv:
        _round_trip(srv)
        procs, data_dir, port = [srv.proc], srv.data_dir, srv.port
    _assert_gone(srv, procs, data_dir, port)


@pytest.mark.timeout(120)
def test_rgw_serves_and_cleans_up():
    for tool in ("radosgw", "radosgw-admin", "ceph-mon", "ceph-osd", "monmaptool", "ceph"):
        require_tool(tool)
    from trunkline.testing.embedded_rgw import EmbeddedRGW

    with EmbeddedRGW(pg_num=4) as srv:
        _round_trip(srv)
        procs, data_dir, port = list(srv.procs), srv.data_dir, srv.port
        assert len(procs) == 3   # monitor, OSD, gateway
    _assert_gone(srv, procs, data_dir, port)


def test_rgw_failure_to_start_leaves_nothing(tmp_path, monkeypatch):
    """A cluster that cannot come up (here: no OSD binary) stops what it started."""
    for tool in ("ceph-mon", "monmaptool", "ceph"):
        require_tool(tool)
    from trunkline.testing import embedded_rgw

    real = embedded_rgw.require_tool
    monkeypatch.setattr(embedded_rgw, "require_tool",
                        lambda n: "/nonexistent/ceph-osd" if n == "ceph-osd" else real(n))
    srv = embedded_rgw.EmbeddedRGW()
    with pytest.raises((RuntimeError, OSError)):
        srv.start(timeout=30)
    assert srv.procs == [] and srv._owned_dir is None
