"""A sync killed with -9 mid-upload resumes on rerun (the cp journal is reused): the parts
already at the store are not sent again, and verify then finds the trees identical."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

from trunkline.engine.journal import list_journals
from trunkline.engine.plan import MiB


def _sync(args, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trunkline.cli.main", "sync", "-q", "-c", "2",
                             "--part-size", "5M", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_killed_sync_resumes_and_verifies(s3server, tmp_path):
    bucket = f"syncres-{uuid.uuid4().hex[:10]}"
    s3server.create_bucket(bucket)
    state = tmp_path / "state"
    env = dict(os.environ, **s3server.env, TRUNKLINE_CONFIG="/nonexistent/trunkline.toml",
               TRUNKLINE_STATE_DIR=str(state))
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    with open(src / "d" / "big.bin", "wb") as f:
        for _ in range(15):
            f.write(os.urandom(4 * MiB))          # 60 MiB, 12 parts
    (src / "small.txt").write_bytes(b"small")
    dst = f"s3://{bucket}/t"

    p = _sync(["--bwlimit", "20M", str(src), dst], env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        js = list_journals(state)
        if js and js[0].bytes_done >= 10 * MiB:   # at least two parts recorded
            break
        assert p.poll() is None, p.communicate()
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    assert list_journals(state), "the killed sync left no journal"

    p = _sync(["--json", str(src), dst], env)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()
    r = json.loads(out)
    assert r["ok"] and r["transfer"]["resumed_bytes"] >= 10 * MiB, r["transfer"]
    # what the rerun sent is at most the file minus what the store already held
    assert r["transfer"]["wire_bytes"] <= 60 * MiB + 5 - r["transfer"]["resumed_bytes"]
    assert list_journals(state) == []
    v = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "verify", str(src), dst],
                       env=env, capture_output=True, timeout=120)
    assert v.returncode == 0, v.stdout.decode() + v.stderr.decode()
