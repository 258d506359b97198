"""``cp --processes N``: one listing, N engine processes on this host (issue 18, item 3).

Against the session's SeaweedFS: every object lands once and byte-identical (sha256 of
what was uploaded), downloads, uploads and s3 -> s3; each process moves a share, a killed
process's shards are moved by the other, a killed parent leaves no engine behind, and a
rerun after losing every process resumes from the ledger.
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

from trunkline.storage.partial import is_partial_name

MiB = 1 << 20


@pytest.fixture(scope="module")
def dataset(s3server):
    """60 objects from 0 B to 1.5 MiB plus a 26 MiB one (split into part ranges s3 -> s3)."""
    s3server.create_bucket("proc-src")
    cl = s3server.client()
    rng = random.Random(18)
    objs = {f"set/{i:02d}/o-{i}.bin": rng.randbytes(rng.choice([0, 1, 900, 70_000, 1_500_000]))
            for i in range(60)}
    objs["set/big/shard.bin"] = rng.randbytes(26 * MiB + 12345)
    for k, v in objs.items():
        cl.put_object(Bucket="proc-src", Key=k, Body=v)
    return {k[len("set/"):]: hashlib.sha256(v).hexdigest() for k, v in objs.items()}


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file():
            assert not is_partial_name(p.name), f"a partial file was left: {p}"
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _bucket(s3server, bucket: str) -> dict[str, str]:
    cl = s3server.client()
    out = {}
    for page in cl.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            body = cl.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            out[o["Key"]] = hashlib.sha256(body).hexdigest()
    return out


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _engines(pid: int, n: int) -> list[int]:
    """The ``n`` engine processes of the ``cp`` ``pid``, once all have started."""
    deadline = time.monotonic() + 60
    kids: list[int] = []
    while time.monotonic() < deadline and len(kids) < n:
        kids = _children(pid)
        time.sleep(0.05)
    assert len(kids) == n, f"engine processes not seen: {kids}"
    return kids


def _forked(parent: int, child: int) -> bool:
    """A forked child runs its parent's command line; a spawned one its own."""
    return (Path(f"/proc/{child}/cmdline").read_bytes()
            == Path(f"/proc/{parent}/cmdline").read_bytes())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_cli_two_processes_to_local_byte_identical(aws_env, dataset, tmp_path):
    dst = tmp_path / "out"
    p = subprocess.run(
        [sys.executable, "-m", "trunkline.cli.main", "cp", "-r", "--json", "-P", "2",
         "s3://proc-src/set/", f"{dst}/"],
        capture_output=True, text=True, env=dict(os.environ), timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["ok"] and out["objects"] == len(dataset) and out["cluster"] == "processes"
    workers = out["nodes"]
    assert len(workers) == 2 and len({w["pid"] for w in workers}) == 2
    assert os.getpid() not in {w["pid"] for w in workers}
    assert sum(w["objects"] for w in workers) == len(dataset)
    assert _tree(dst) == dataset
    # what each process checked comes back to the one result (SeaweedFS keeps a CRC-32 of
    # every object uploaded without a checksum; an empty object has nothing to check)
    assert sum(out["verified"].values()) + len(out["unverified"]) == len(dataset)
    assert sum(out["verified"].values()) >= len(dataset) - 1


def test_api_processes_s3_to_s3_splits_the_big_object(aws_env, s3server, dataset):
    import trunkline
    from trunkline.cluster import copy_on_processes

    s3server.create_bucket("proc-dst1")
    r = trunkline.copy("s3://proc-src/set/", "s3://proc-dst1/x/", recursive=True, processes=2,
                       part_size="5M", server_side=False)
    assert r.ok, r.failures
    assert r.objects == len(dataset)
    assert {k[len("x/"):]: v for k, v in _bucket(s3server, "proc-dst1").items()} == dataset
    # small shards: both processes take some, the big object's ranges included
    s3server.create_bucket("proc-dst2")
    r = copy_on_processes("s3://proc-src/set/", "s3://proc-dst2/x/", processes=2,
                          recursive=True, part_size="5M", shard_size="6M", shard_objects=8,
                          server_side=False)
    assert r.ok, r.failures
    assert r.objects == len(dataset) and all(n["objects"] > 0 for n in r.nodes), r.nodes
    assert {k[len("x/"):]: v for k, v in _bucket(s3server, "proc-dst2").items()} == dataset
    assert s3server.client().list_multipart_uploads(Bucket="proc-dst2").get("Uploads", []) == []


def test_upload_of_a_tree_with_two_processes(aws_env, s3server, tmp_path):
    """local -> s3: each process uploads whole files (a large one too, multipart, in one
    process); a killed process's files are uploaded by the other; no upload is left open."""
    from trunkline.cluster import copy_on_processes

    rng = random.Random(19)
    src = tmp_path / "tree"
    want = {}
    for i in range(40):
        data = rng.randbytes(rng.choice([0, 7, 50_000, 600_000]))
        p = src / f"d{i % 3}" / f"f{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        want[f"up/d{i % 3}/f{i}.bin"] = hashlib.sha256(data).hexdigest()
    big = rng.randbytes(12 * MiB + 5)
    (src / "big.bin").write_bytes(big)
    want["up/big.bin"] = hashlib.sha256(big).hexdigest()
    killed: list[int] = []

    def on_progress(snap):
        for n in snap.nodes:
            if not killed and n.alive and n.done_bytes >= 1 * MiB and n.shards > 0:
                os.kill(n.pid, signal.SIGKILL)
                killed.append(n.pid)

    s3server.create_bucket("proc-up")
    r = copy_on_processes(str(src), "s3://proc-up/up/", processes=2, recursive=True,
                          part_size="5M", shard_objects=6, bwlimit=6 * MiB,
                          on_progress=on_progress, tick=0.2)
    assert killed, "no process was seen moving bytes"
    assert r.ok, r.failures
    # what the killed process finished of its shard is skipped by the other (the shard's
    # journal is on this host): each file counted once, moved or skipped
    assert r.objects + r.skipped_objects == len(want) and r.lost_workers == 1
    assert _bucket(s3server, "proc-up") == want
    assert s3server.client().list_multipart_uploads(Bucket="proc-up").get("Uploads", []) == []
    # the driver probed the store once for both processes: SeaweedFS refuses a wrong
    # CRC32C, so each upload counts as checked by it (unprobed, none could)
    assert not r.unverified, r.unverified
    assert r.verified.get("crc32c-by-store", 0) >= 1, r.verified


def test_a_process_keeps_its_connections_from_shard_to_shard(aws_env, dataset, tmp_path):
    """8 shards over 2 processes, 2 connections each: a shard starts on the connections
    its process already holds (no new handshakes), and every GET is still in the run's
    connection records (the flow records), sent by each process at the end."""
    from trunkline.cluster import copy_on_processes

    r = copy_on_processes("s3://proc-src/set/", f"{tmp_path / 'c'}/", processes=2,
                          recursive=True, shard_objects=8, connections=2)
    assert r.ok, r.failures
    assert r.shards == 8
    # at most 2 shards in flight per process x 2 connections; one set per shard would be 16
    assert 2 <= len(r.connections) <= 8, len(r.connections)
    # every request the shards counted is in some connection's record (plus what the
    # engine sends for itself, such as a capability probe)
    empty = hashlib.sha256(b"").hexdigest()
    assert r.requests >= sum(1 for v in dataset.values() if v != empty)
    assert sum(c["requests"] for c in r.connections) >= r.requests
    assert _tree(tmp_path / "c") == dataset


def test_max_connections_is_the_total_of_the_processes(aws_env, dataset, tmp_path):
    """``max_connections`` is split across the processes as ``bwlimit`` is (the store sees
    their sum): 8 over 2 processes is 4 each, so at most 2 shards x 4 per process; the
    whole 8 each would allow 32. The default 64 over 16 processes is 4 each; a pinned
    ``connections`` stays each process's own."""
    from trunkline.cluster import copy_on_processes
    from trunkline.cluster.driver import connections_shared
    from trunkline.options import DEFAULT_MAX_CONNECTIONS, TransferOptions

    r = copy_on_processes("s3://proc-src/set/", f"{tmp_path / 'm'}/", processes=2,
                          recursive=True, shard_objects=4, max_connections=8)
    assert r.ok, r.failures
    assert r.options["max_connections"] == 4
    assert 2 <= len(r.connections) <= 2 * 2 * 4, len(r.connections)
    assert _tree(tmp_path / "m") == dataset
    assert connections_shared(TransferOptions(), 16).max_connections == \
        DEFAULT_MAX_CONNECTIONS // 16
    assert connections_shared(TransferOptions(max_connections=3), 8).max_connections == 1
    pinned = connections_shared(TransferOptions(connections=6), 16)
    assert (pinned.connections, pinned.max_connections) == (6, 6)   # each process its own
    assert connections_shared(TransferOptions(), 1) == TransferOptions()


def test_bwlimit_is_the_total_of_all_processes_and_their_shards(aws_env, s3server, tmp_path):
    """``--bwlimit`` is split across the processes, and each process's share caps its
    shards in flight together (2 at once): 40 even objects take as long as the total cap
    says (one limiter per shard would take half as long)."""
    from trunkline.cluster import copy_on_processes

    s3server.create_bucket("proc-even")
    cl = s3server.client()
    rng = random.Random(20)
    want = {}
    for i in range(40):
        data = rng.randbytes(512 * 1024)
        cl.put_object(Bucket="proc-even", Key=f"e/{i:02d}.bin", Body=data)
        want[f"{i:02d}.bin"] = hashlib.sha256(data).hexdigest()
    cap = 8 * MiB
    r = copy_on_processes("s3://proc-even/e/", f"{tmp_path / 'b'}/", processes=2,
                          recursive=True, shard_objects=5, bwlimit=cap)
    assert r.ok, r.failures
    assert _tree(tmp_path / "b") == want
    floor = r.bytes / cap     # 2.5 s
    # each of the 2 processes' buckets may start with a burst of its share
    assert r.seconds >= floor - 0.3, (r.bytes, r.seconds)


def test_killing_a_process_mid_run_moves_its_shards_on_the_other(aws_env, dataset, tmp_path):
    from trunkline.cluster import copy_on_processes

    killed: list[int] = []

    def on_progress(snap):
        if killed:
            return
        for n in snap.nodes:   # one well into a shard it is still moving
            if n.alive and n.done_bytes >= 2 * MiB and n.shards > 0:
                os.kill(n.pid, signal.SIGKILL)
                killed.append(n.pid)
                return

    dst = tmp_path / "k"
    # 8 MiB/s in total makes the run last several seconds
    r = copy_on_processes("s3://proc-src/set/", f"{dst}/", processes=2, recursive=True,
                          shard_objects=8, bwlimit=8 * MiB, on_progress=on_progress, tick=0.2)
    assert killed, "no process was seen moving bytes"
    assert r.ok, r.failures
    assert r.lost_workers == 1 and r.shard_retries >= 1
    assert _tree(dst) == dataset


def test_cli_a_forked_process_killed_mid_run_is_replaced_by_the_other(aws_env, dataset,
                                                                      tmp_path):
    """The same loss through the CLI, where the engines are forked (this test process may
    run threads of its own, so the API tests above may have spawned theirs)."""
    dst = tmp_path / "kf"
    p = subprocess.Popen(
        [sys.executable, "-m", "trunkline.cli.main", "cp", "-r", "--json", "-P", "2",
         "--bwlimit", "8M", "s3://proc-src/set/", f"{dst}/"],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        kids = _engines(p.pid, 2)
        assert _forked(p.pid, kids[0]), "not forked"
        # ~45 MiB at 8 MiB/s in all: 1.5 s in, each process is inside a shard
        time.sleep(1.5)
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        os.kill(kids[0], signal.SIGKILL)
        out, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    assert p.returncode == 0, err.decode()[-2000:]
    res = json.loads(out)
    assert res["ok"] and res["lost_workers"] == 1 and res["shard_retries"] >= 1, res
    assert _tree(dst) == dataset


def test_rerun_after_losing_every_process_resumes(aws_env, dataset, tmp_path):
    from trunkline.cluster import copy_on_processes

    killed: list[int] = []

    def kill_all(snap):
        if not killed and snap.shards_done >= 1:   # in the ledger
            for n in snap.nodes:
                os.kill(n.pid, signal.SIGKILL)
                killed.append(n.pid)

    dst = tmp_path / "r"
    kw = dict(processes=2, recursive=True, shard_objects=8, bwlimit=8 * MiB, tick=0.2)
    r1 = copy_on_processes("s3://proc-src/set/", f"{dst}/", on_progress=kill_all, **kw)
    assert len(killed) == 2
    assert not r1.ok and "workers were lost" in str(r1.failures[-1]), r1.failures
    r2 = copy_on_processes("s3://proc-src/set/", f"{dst}/", **kw)
    assert r2.ok, r2.failures
    assert r2.shards_skipped >= 1 and r2.skipped_objects >= 8     # the ledger's done shards
    assert r2.objects + r2.skipped_objects == len(dataset)
    assert _tree(dst) == dataset


_HIDDEN_THREAD = """
import _thread, time
from trunkline.cluster.processes import can_fork
before = can_fork()
hold, done = _thread.allocate_lock(), _thread.allocate_lock()
hold.acquire(); done.acquire()
def body():
    hold.acquire()
    done.release()
_thread.start_new_thread(body, ())
during = can_fork()
hold.release()
done.acquire(timeout=10)
deadline = time.monotonic() + 10
while not can_fork() and time.monotonic() < deadline:   # the thread's last steps
    time.sleep(0.01)
print(before, during, can_fork())
"""


def test_a_thread_the_threading_module_does_not_know_stops_the_fork():
    """A thread started below ``threading`` (as a C library's pool is) is counted by the
    kernel: no fork while it runs, a fork again once it is gone. In a fresh interpreter
    (this test process may run library threads of its own)."""
    r = subprocess.run([sys.executable, "-c", _HIDDEN_THREAD], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False", "True"]


# the CLI with a thread of the caller's running beside it: its children must be spawned
_WITH_A_THREAD = ("import sys, threading\n"
                  "threading.Thread(target=threading.Event().wait, daemon=True).start()\n"
                  "from trunkline.cli.main import main\n"
                  "sys.exit(main())\n")


@pytest.mark.parametrize("how", ["fork", "spawn"])
def test_a_killed_parent_leaves_no_engine_behind(aws_env, dataset, tmp_path, how):
    """SIGKILL the `cp` mid-run: its engine processes see their socket close and exit,
    whether they were forked from the CLI (no other thread there) or spawned (a thread of
    the caller's running)."""
    entry = ["-m", "trunkline.cli.main"] if how == "fork" else ["-c", _WITH_A_THREAD]
    p = subprocess.Popen(
        [sys.executable, *entry, "cp", "-r", "-q", "-P", "3",
         "--bwlimit", "2M", "s3://proc-src/set/", f"{tmp_path / 'p'}/"],
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        kids = _engines(p.pid, 3)
        for k in kids:
            assert _forked(p.pid, k) == (how == "fork"), Path(f"/proc/{k}/cmdline").read_bytes()
        time.sleep(1.0)   # into the copy
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        p.kill()
        p.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.05)
        assert not any(_alive(k) for k in kids), "an engine outlived its parent"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
        for k in _children(p.pid):
            os.kill(k, signal.SIGKILL)


def test_cli_processes_usage_errors(aws_env, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "trunkline.cli.main", "cp", *args],
                              capture_output=True, text=True, env=dict(os.environ), timeout=60)

    (tmp_path / "a").mkdir()
    p = run("-r", "-P", "2", str(tmp_path / "a"), str(tmp_path / "b"))
    assert p.returncode == 2
    assert [ln for ln in p.stderr.splitlines() if ln.strip()] == [
        "trunkline: error: --processes moves to or from a store: one side must be s3://"]
    p = run("-r", "-P", "2", "s3://proc-src/set/", "s3://proc-src/x/", "--ray=local")
    assert p.returncode == 2 and "--processes is for this host" in p.stderr
    p = run("-r", "-P", "0", "s3://proc-src/set/", str(tmp_path))
    assert p.returncode == 2



def test_progress_counts_objects_as_they_finish_not_as_their_shard_does(aws_env, dataset,
                                                                       tmp_path):
    """The objects a live shard finished count in the progress at once, as its bytes do:
    with the whole listing in one shard, a count that only moved when the shard came back
    would read 0 until the end."""
    from trunkline.cluster import copy_on_processes

    seen: list[tuple[int, int]] = []
    r = copy_on_processes("s3://proc-src/set/", f"{tmp_path / 'p'}/", processes=2,
                          recursive=True, shard_objects=1000, bwlimit=8 * MiB, tick=0.2,
                          on_progress=lambda snap: seen.append((snap.objects,
                                                                snap.total_objects)))
    assert r.ok, r.failures
    assert r.shards == 1
    assert all(0 <= n <= total for n, total in seen), seen
    assert any(0 < n < len(dataset) for n, _ in seen), seen
    assert _tree(tmp_path / "p") == dataset
