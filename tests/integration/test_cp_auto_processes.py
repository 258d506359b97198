"""``cp`` without ``-P`` takes engine processes by itself for a long listing of small
objects (``cluster/auto.py``, issue 18), against the session's SeaweedFS: byte-identical
(sha256 of what was written), the count the rule gives, and one process where it says one.

Its own file so that it runs beside other files in CI (its checks read no clock).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys

from test_cp_processes import _bucket, _tree


def _cp_json(*args: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "cp", "--json", *args],
                       capture_output=True, text=True, env=dict(os.environ), timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)


def test_cli_takes_processes_by_itself_for_a_long_listing_of_small_objects(aws_env, s3server,
                                                                          tmp_path):
    """Without ``-P``, ``cp`` moves a listing whose first 1,000 objects are small with one
    engine process per CPU (up to 8), and anything else with one: an upload of 1,030 small
    files and its download each on several processes, byte-identical; the download with
    ``-P 1``, and a prefix of 30 objects, in one."""
    from trunkline.cluster.auto import AUTO_MAX_PROCESSES
    from trunkline.options import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_MEMORY

    cpus = len(os.sched_getaffinity(0))
    many = min(cpus, AUTO_MAX_PROCESSES) if cpus >= 2 else 1
    rng = random.Random(21)
    src = tmp_path / "tree"
    want = {}
    for i in range(1030):
        data = rng.randbytes(rng.choice([0, 10, 3000, 40_000]))
        rel = f"{'a' if i < 1000 else 'b'}/{i:04d}.bin"
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
        want[rel] = hashlib.sha256(data).hexdigest()
    s3server.create_bucket("proc-auto")

    up = _cp_json("-r", str(src), "s3://proc-auto/t/")
    assert up["ok"] and up["objects"] == len(want)
    assert _bucket(s3server, "proc-auto") == {f"t/{k}": v for k, v in want.items()}

    down = _cp_json("-r", "s3://proc-auto/t/", f"{tmp_path / 'down'}/")
    assert down["ok"] and down["objects"] == len(want)
    assert _tree(tmp_path / "down") == want
    one = _cp_json("-r", "-P", "1", "s3://proc-auto/t/", f"{tmp_path / 'one'}/")
    assert _tree(tmp_path / "one") == want
    short = _cp_json("-r", "s3://proc-auto/t/b/", f"{tmp_path / 'short'}/")
    assert _tree(tmp_path / "short") == {k[2:]: v for k, v in want.items() if k[:2] == "b/"}

    for out in (up, down):
        if many > 1:
            assert out["cluster"] == "processes" and len(out["nodes"]) == many, out["nodes"]
            assert sum(n["objects"] for n in out["nodes"]) == len(want)
            # the memory bound stays the command's: split, as the connections are
            assert out["options"]["max_memory"] == DEFAULT_MAX_MEMORY // many
            assert out["options"]["max_connections"] == DEFAULT_MAX_CONNECTIONS // many
        else:
            assert "cluster" not in out
    assert "cluster" not in one and one["objects"] == len(want)
    assert "cluster" not in short and short["objects"] == 30
