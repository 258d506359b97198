"""``trunkline probe`` through the emulated WAN: 40 ms RTT, 1 MiB window, 400 Mbit/s cap.

One connection can carry window/RTT = 26.2 MB/s; two fill the 50 MB/s cap. The probe must
see the path: RTT within 20 % of 40 ms, one connection within 20 % of window/RTT, and the
knee of the sweep at 2 (or 4) streams, all within its time bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from trunkline import physics
from trunkline.engine.probe import recommend_part_size, saturation
from trunkline.testing import Proxy

MiB = 2**20
BUCKET = "probe-wan"
DELAY, WINDOW, CAP = 0.020, MiB, 400e6


@pytest.fixture(scope="module")
def bucket(s3server):
    s3server.create_bucket(BUCKET)
    s3server.client().put_object(Bucket=BUCKET, Key="data/big.bin", Body=os.urandom(32 * MiB))
    s3server.client().put_object(Bucket=BUCKET, Key="data/small.bin", Body=b"x" * 100)
    return BUCKET


def test_saturation_knee_and_part_size():
    assert saturation([(1, 10.0), (2, 20.0), (4, 20.5)]) == (2, 20.5)
    assert saturation([(1, 10.0), (2, 19.0), (4, 30.0)]) == (4, 30.0)   # never stopped
    assert saturation([(1, 10.0), (2, 10.4)]) == (1, 10.4)
    # 40 ms TTFB at 26 MB/s: a part must take >= 0.4 s -> 10.5 MB -> 16 MiB
    assert recommend_part_size(0.040, 26.2e6) == 16 * MiB
    assert recommend_part_size(0.0005, 1e9) == 8 * MiB
    assert recommend_part_size(1.0, 1e9) == 512 * MiB


def test_probe_measures_emulated_path(s3server, bucket, monkeypatch):
    for k, v in s3server.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TRUNKLINE_CONFIG", "/nonexistent/trunkline.toml")
    from trunkline.api import probe

    with Proxy(("127.0.0.1", s3server.port), delay_s=DELAY, window_bytes=WINDOW,
               rate_bps=CAP) as px:
        monkeypatch.setenv("AWS_ENDPOINT_URL", px.endpoint_url)
        t0 = time.monotonic()
        r = probe(f"s3://{bucket}/data/", duration=4)
        took = time.monotonic() - t0
    want_one = physics.window_ceiling(WINDOW, 2 * DELAY)
    print(f"rtt {r.rtt_s * 1e3:.1f} ms, one {r.one_stream / 1e6:.1f} MB/s "
          f"(window/RTT {want_one / 1e6:.1f}), sweep {r.sweep}, took {took:.1f} s")
    assert r.object_key == "data/big.bin"
    assert abs(r.rtt_s - 2 * DELAY) <= 0.2 * 2 * DELAY, r.rtt_s
    assert abs(r.one_stream - want_one) <= 0.2 * want_one, r.one_stream
    assert r.saturating_streams in (2, 4), r.sweep
    assert abs(r.peak * 8 - CAP) <= 0.2 * CAP, r.sweep
    assert r.recommended_connections == r.saturating_streams
    assert r.recommended_part_size == 16 * MiB      # 40 ms TTFB at 26 MB/s, see above
    assert abs(r.window_bytes - WINDOW) <= 0.2 * WINDOW
    assert took <= 4 + 3, "the probe must stay within its time bound"


def run_cli(args, env):
    e = dict(os.environ, **env, TRUNKLINE_CONFIG="/nonexistent/trunkline.toml")
    return subprocess.run([sys.executable, "-m", "trunkline.cli.main", *args], env=e,
                          capture_output=True, text=True, timeout=60)


def test_probe_cli_write_json_and_cleanup(s3server, bucket):
    r = run_cli(["probe", f"s3://{bucket}/tmp/", "--write", "--duration", "2",
                 "--max-streams", "4", "--json"], s3server.env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["wrote_object"] and d["object_size"] == 64 * MiB
    assert d["one_stream"] > 0 and d["recommended_connections"] >= 1 and d["sweep"]
    left = s3server.client().list_objects_v2(Bucket=bucket, Prefix="tmp/").get("KeyCount", 0)
    assert left == 0, "the temporary object must be deleted"


def test_probe_cli_errors_are_one_line(s3server, bucket):
    r = run_cli(["probe", f"s3://{bucket}/nothing-here/", "--duration", "1"], s3server.env)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "--write" in r.stderr, r.stderr
    r = run_cli(["probe", "/tmp/local"], s3server.env)
    assert r.returncode == 2 and "s3://" in r.stderr, r.stderr
