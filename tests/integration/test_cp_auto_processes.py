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
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cp_processes import _alive, _bucket, _children, _tree


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """1,030 small files (1,000 under a/, 30 under b/) and their sha256 by name."""
    rng = random.Random(21)
    src = tmp_path_factory.mktemp("auto") / "tree"
    want = {}
    for i in range(1030):
        data = rng.randbytes(rng.choice([0, 10, 3000, 40_000]))
        rel = f"{'a' if i < 1000 else 'b'}/{i:04d}.bin"
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
        want[rel] = hashlib.sha256(data).hexdigest()
    return src, want


def _many() -> int:
    """The processes the rule gives a full page of small objects here, computed apart."""
    from trunkline.cluster.auto import AUTO_MAX_PROCESSES

    cpus = len(os.sched_getaffinity(0))
    return min(cpus, AUTO_MAX_PROCESSES) if cpus >= 2 else 1


def _cli_json(verb: str, *args: str) -> dict:
    """``trunkline VERB --json ARGS`` in its own process: its result, after exit 0."""
    p = subprocess.run([sys.executable, "-m", "trunkline.cli.main", verb, "--json", *args],
                       capture_output=True, text=True, env=dict(os.environ), timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)


def test_cli_takes_processes_by_itself_for_a_long_listing_of_small_objects(aws_env, s3server,
                                                                          small_tree, tmp_path):
    """Without ``-P``, ``cp`` moves a listing whose first 1,000 objects are small with one
    engine process per CPU (up to 8), and anything else with one: an upload of 1,030 small
    files and its download each on several processes, byte-identical; the download with
    ``-P 1``, and a prefix of 30 objects, in one."""
    from trunkline.options import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_MEMORY

    many = _many()
    src, want = small_tree
    s3server.create_bucket("proc-auto")

    up = _cli_json("cp", "-r", str(src), "s3://proc-auto/t/")
    assert up["ok"] and up["objects"] == len(want)
    assert _bucket(s3server, "proc-auto") == {f"t/{k}": v for k, v in want.items()}

    down = _cli_json("cp", "-r", "s3://proc-auto/t/", f"{tmp_path / 'down'}/")
    assert down["ok"] and down["objects"] == len(want)
    assert _tree(tmp_path / "down") == want
    one = _cli_json("cp", "-r", "-P", "1", "s3://proc-auto/t/", f"{tmp_path / 'one'}/")
    assert _tree(tmp_path / "one") == want
    short = _cli_json("cp", "-r", "s3://proc-auto/t/b/", f"{tmp_path / 'short'}/")
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


def test_a_killed_copy_on_processes_it_chose_resumes_on_the_same_path(aws_env, s3server,
                                                                      small_tree, tmp_path):
    """The rule is a pure function of the listing's first page and the CPUs, so the rerun of
    a copy killed -9 mid-run (the ``cp`` process: its engines exit with it) takes the same
    path and resumes what the first run left: finished shards skipped, nothing moved twice
    beyond the shards in flight, the tree byte-identical, no partial file left."""
    src, want = small_tree
    s3server.create_bucket("proc-auto-kill")
    assert _cli_json("cp", "-r", "-P", "1", str(src), "s3://proc-auto-kill/k/")["ok"]
    dst = tmp_path / "k"
    argv = [sys.executable, "-m", "trunkline.cli.main", "cp", "-r", "-q",
            "s3://proc-auto-kill/k/", f"{dst}/"]
    # ~11 MB at 1 MiB/s: killed once 300 files (more than one shard of 250) have landed
    p = subprocess.Popen([*argv, "--bwlimit", "1MiB"], env=dict(os.environ),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    landed = 0
    while p.poll() is None and time.monotonic() < deadline:
        landed = sum(1 for f in dst.rglob("*.bin") if f.is_file()) if dst.exists() else 0
        if landed >= 300:
            break
        time.sleep(0.05)
    assert p.poll() is None, "the copy ended before it could be killed"
    engines = _children(p.pid)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 30        # the engines exit when the parent's end closes
    while any(_alive(e) for e in engines):
        assert time.monotonic() < deadline, "an engine outlived its parent"
        time.sleep(0.05)
    assert len(engines) == (_many() if _many() > 1 else 0), engines

    out = _cli_json("cp", "-r", "s3://proc-auto-kill/k/", f"{dst}/")
    assert out["ok"], out.get("failures")
    assert _tree(dst) == want
    assert out["objects"] + out["skipped_objects"] == len(want)
    # an engine journals its finished small objects in batches (after each batch's folder
    # fsync): a kill re-copies those landed since its last batch and those in flight; ~100
    # of the 300 landed when this was written (1 MiB/s, ~95 files/s)
    assert out["skipped_objects"] >= 100, out["skipped_objects"]
    if _many() > 1:
        assert out["cluster"] == "processes"


def test_sync_takes_processes_by_itself_for_many_small_objects_to_copy(aws_env, s3server,
                                                                       small_tree, tmp_path):
    """``sync`` applies the rule to what it is to copy, not to what it lists: 1,030 new
    small files go up on several processes, and the stale key the destination held is
    deleted after them (``--delete``); the rerun finds everything unchanged and copies
    nothing; the way back (s3 -> local) on several processes too, byte-identical."""
    many = _many()
    src, want = small_tree
    s3server.create_bucket("proc-auto-sync")
    cl = s3server.client()
    cl.put_object(Bucket="proc-auto-sync", Key="s/stale.bin", Body=b"gone after the sync")

    up = _cli_json("sync", "--delete", str(src), "s3://proc-auto-sync/s")
    assert up["copied"] == len(want) and up["deleted"] == 1 and up["ok"], up
    assert _bucket(s3server, "proc-auto-sync") == {f"s/{k}": v for k, v in want.items()}
    again = _cli_json("sync", "--delete", str(src), "s3://proc-auto-sync/s")
    assert again["copied"] == 0 and again["unchanged"] == len(want) and again["deleted"] == 0
    assert "cluster" not in (again["transfer"] or {})

    down = _cli_json("sync", "s3://proc-auto-sync/s", str(tmp_path / "back"))
    assert down["copied"] == len(want) and down["ok"]
    assert _tree(tmp_path / "back") == want
    assert _cli_json("sync", "s3://proc-auto-sync/s", str(tmp_path / "back"))["copied"] == 0

    for out in (up["transfer"], down["transfer"]):
        assert out["objects"] == len(want)
        if many > 1:
            assert out["cluster"] == "processes" and len(out["nodes"]) == many, out["nodes"]
            assert sum(n["objects"] for n in out["nodes"]) == len(want)
        else:
            assert "cluster" not in out
