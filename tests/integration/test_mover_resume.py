"""kill -9 at random points of a multi-GiB download and upload, again and again: every
resumed result is byte-identical, and what a resume sends again is bounded by the parts
in flight at the kill (measured on the wire by a counting proxy in front of SeaweedFS)."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import sha256_file
from trunkline.testing import Proxy

GiB = 1024**3
MiB = 1024**2
SIZE = 2 * GiB + 4321
PART = 16 * MiB
CONNS = 4
KILLS = int(os.environ.get("TRUNKLINE_RESUME_KILLS", "20"))
BUDGET_S = 150  # per direction: the loop stops killing when this is spent


def _make_file(path: Path) -> str:
    h = hashlib.sha256()
    block = bytearray(os.urandom(8 * MiB))
    with open(path, "wb") as f:
        left, i = SIZE, 0
        while left:
            block[:8] = i.to_bytes(8, "little")  # every block differs
            chunk = memoryview(block)[: min(len(block), left)]
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
            i += 1
    return h.hexdigest()



def _cp(args, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trunkline.cli.main", "cp", "-q", "-c", str(CONNS),
         "--part-size", f"{PART // MiB}M", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _kill_loop(args, env, rng) -> tuple[int, bool]:
    """Start/kill -9 the copy up to KILLS times; returns (kills, finished on its own).

    The killed runs are capped at 1 Gbit/s so that 20 random kills land inside one copy.
    """
    kills = 0
    deadline = time.monotonic() + BUDGET_S
    while kills < KILLS and time.monotonic() < deadline:
        p = _cp(["--bwlimit", "1Gbit", *args], env)
        time.sleep(rng.uniform(0.6, 1.6))  # ~0.4 s of it is interpreter start-up
        if p.poll() is not None:  # finished before the kill: nothing left to resume
            _, err = p.communicate()
            assert p.returncode == 0, err
            return kills, True
        p.send_signal(signal.SIGKILL)
        p.communicate()
        kills += 1
    return kills, False


def _finish(args, env) -> None:
    final = _cp(args, env)
    _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err


@pytest.fixture
def env(s3server, tmp_path):
    e = dict(os.environ, **s3server.env)
    e["TRUNKLINE_STATE_DIR"] = str(tmp_path / "state")
    e["TRUNKLINE_CONFIG"] = "/nonexistent"
    return e


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill9_download_resumes_byte_identical(s3server, env, tmp_path):
    s3server.create_bucket("resume-dl")
    src = tmp_path / "src.bin"
    digest = _make_file(src)
    c = s3server.client()
    up = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "cp", "-q", str(src),
                         "s3://resume-dl/big.bin"], env=env, capture_output=True)
    assert up.returncode == 0, up.stderr
    src.unlink()
    assert c.head_object(Bucket="resume-dl", Key="big.bin")["ContentLength"] == SIZE
    out = tmp_path / "out.bin"
    rng = random.Random(1)
    with Proxy(upstream=("127.0.0.1", s3server.port)) as proxy:
        penv = dict(env, AWS_ENDPOINT_URL=proxy.endpoint_url)
        args = ["s3://resume-dl/big.bin", str(out)]
        kills, finished = _kill_loop(args, penv, rng)
        assert finished or not out.exists(), "a killed download left a complete-looking file"
        if not finished:
            _finish(args, penv)
        moved = proxy.stats.bytes_down
    assert kills >= min(KILLS, 5), f"only {kills} kills happened"
    assert sha256_file(out) == digest
    resent = moved - SIZE
    bound = kills * CONNS * PART + kills * 64 * 1024  # parts in flight (+ heads) per kill
    print(f"download: {kills} kills, re-sent {resent / MiB:.1f} MiB, bound {bound / MiB:.0f} MiB")
    assert 0 <= resent <= bound


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill9_upload_resumes_byte_identical(s3server, env, tmp_path):
    s3server.create_bucket("resume-up")
    src = tmp_path / "src.bin"
    digest = _make_file(src)
    rng = random.Random(2)
    with Proxy(upstream=("127.0.0.1", s3server.port)) as proxy:
        penv = dict(env, AWS_ENDPOINT_URL=proxy.endpoint_url)
        args = [str(src), "s3://resume-up/big.bin"]
        kills, finished = _kill_loop(args, penv, rng)
        if not finished:
            _finish(args, penv)
        moved = proxy.stats.bytes_up
    assert kills >= min(KILLS, 5), f"only {kills} kills happened"
    body = s3server.client().get_object(Bucket="resume-up", Key="big.bin")["Body"]
    h = hashlib.sha256()
    for chunk in iter(lambda: body.read(8 * MiB), b""):
        h.update(chunk)
    assert h.hexdigest() == digest
    resent = moved - SIZE
    bound = kills * CONNS * PART + kills * 256 * 1024
    print(f"upload: {kills} kills, re-sent {resent / MiB:.1f} MiB, bound {bound / MiB:.0f} MiB")
    assert 0 <= resent <= bound
    # one multipart upload completed, none left behind
    c = s3server.client()
    assert not c.list_multipart_uploads(Bucket="resume-up").get("Uploads")
