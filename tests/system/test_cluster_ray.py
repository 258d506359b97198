"""Multi-node copies on Ray (issue 8): a local cluster of a head (no CPUs: it only
coordinates) and two worker nodes, each its own raylet process, all on 127.0.0.1.

Ray advertises this host's routable address even when told 127.0.0.1; with
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 every Ray process binds and advertises loopback.
``ray.cluster_utils.Cluster`` starts the raylets (the ``ray start`` CLI refuses to join
nodes in that mode); the fixture stops every process it started.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys

import pytest
from click.testing import CliRunner

from trunkline.cluster.shard import Item, part_ranges, plan_shards, shard_id
from trunkline.storage.partial import is_partial_name
from trunkline.storage.s3 import ObjectInfo

MiB = 1 << 20


# -- sans-I/O sharding (no Ray needed) ---------------------------------------------------


def _listing(sizes: dict[str, int]):
    return [(k, ObjectInfo(f"p/{k}", n, f'"e{k}"', None)) for k, n in sizes.items()]


def test_shards_batch_by_bytes_and_count_deterministically():
    sizes = {f"o{i:03d}": MiB for i in range(25)}
    a = list(plan_shards(_listing(sizes), part_size=8 * MiB, shard_bytes=10 * MiB,
                         shard_objects=4))
    b = list(plan_shards(_listing(sizes), part_size=8 * MiB, shard_bytes=10 * MiB,
                         shard_objects=4))
    assert [len(s.items) for s in a] == [4, 4, 4, 4, 4, 4, 1]
    assert [s.id for s in a] == [s.id for s in b]            # same listing, same shards
    assert sorted(it.rel for s in a for it in s.items) == sorted(sizes)
    sizes["o003"] = 2 * MiB                                  # one object changed
    c = list(plan_shards(_listing(sizes), part_size=8 * MiB, shard_bytes=10 * MiB,
                         shard_objects=4))
    assert [s.id == t.id for s, t in zip(a, c, strict=True)] == [True] * 0 + [False] + [True] * 6


def test_large_objects_split_into_part_ranges_with_the_drivers_upload():
    calls = []

    def split(rel, info, ps, ranges):
        calls.append((rel, ps, ranges))
        return "UPLOAD", {ranges[1]}             # the second range is done already

    shards = list(plan_shards(_listing({"big": 50 * MiB, "small": MiB}), part_size=5 * MiB,
                              shard_bytes=20 * MiB, split=split))
    assert calls == [("big", 5 * MiB, [(1, 4), (5, 8), (9, 10)])]
    ranges = [s for s in shards if s.split]
    assert [(s.items[0].first, s.items[0].last, s.bytes) for s in ranges] == \
        [(1, 4, 20 * MiB), (9, 10, 10 * MiB)]
    assert all(s.items[0].upload_id == "UPLOAD" and s.objects == 0 for s in ranges)
    assert [it.rel for s in shards if not s.split for it in s.items] == ["small"]
    assert part_ranges(50 * MiB, 5 * MiB, 1) == [(n, n) for n in range(1, 11)]
    assert shard_id([Item("a", "a", 1, None, None, 5 * MiB)]) != \
        shard_id([Item("a", "a", 2, None, None, 5 * MiB)])


def test_cli_ray_without_ray_installed_is_a_one_line_usage_error(monkeypatch):
    from trunkline.cli.main import cli as main

    monkeypatch.setitem(sys.modules, "ray", None)   # import ray -> ImportError
    r = CliRunner().invoke(main, ["cp", "-r", "s3://b/p/", "s3://c/q/", "--ray"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines == ["trunkline: error: multi-node copies need Ray, which is not installed: "
                     "pip install 'trunkline[ray]'"]


def test_cli_ray_rejects_a_path_taken_as_address():
    from trunkline.cli.main import cli as main

    r = CliRunner().invoke(main, ["cp", "--ray", "s3://b/p/", "s3://c/q/"])
    assert r.exit_code == 2
    assert "is not a Ray address" in r.output


# -- a real local cluster ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'trunkline[ray]')")
    from trunkline.testing.ray_cluster import local_ray_cluster

    with local_ray_cluster(("a", "b"), object_store_memory=80 * MiB) as c:
        yield c


@pytest.fixture(scope="module")
def dataset(s3server):
    """30 objects from 0 B to 1.5 MiB plus a 26 MiB one (split across nodes in s3 -> s3)."""
    import random

    for k, v in s3server.env.items():
        os.environ[k] = v
    s3server.create_bucket("ray-src")
    cl = s3server.client()
    rng = random.Random(8)
    objs = {}
    for i in range(30):
        objs[f"set/{i:02d}/part-{i}.bin"] = rng.randbytes(rng.choice([0, 1, 900, 70_000,
                                                                       1_500_000]))
    objs["set/big/shard.bin"] = rng.randbytes(26 * MiB + 12345)
    for k, v in objs.items():
        cl.put_object(Bucket="ray-src", Key=k, Body=v)
    return {k[len("set/"):]: hashlib.sha256(v).hexdigest() for k, v in objs.items()}


def _s3_digests(s3server, bucket, prefix):
    cl = s3server.client()
    out = {}
    for page in cl.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            body = cl.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            out[o["Key"][len(prefix):]] = hashlib.sha256(body).hexdigest()
    return out


def _pending_uploads(s3server, bucket):
    return s3server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_s3_to_s3_on_two_nodes_byte_identical(ray_cluster, s3server, dataset):
    from trunkline.cluster import copy_on_ray

    s3server.create_bucket("ray-dst1")
    snaps = []
    r = copy_on_ray("s3://ray-src/set/", "s3://ray-dst1/copy/", recursive=True,
                    cluster=ray_cluster.address, part_size="5M", shard_size="6M",
                    shard_objects=8, server_side=False, on_progress=snaps.append, tick=0.25)
    assert r.ok, r.failures
    assert _s3_digests(s3server, "ray-dst1", "copy/") == dataset
    assert r.objects == len(dataset)
    assert r.bytes == sum(s3server.client().head_object(Bucket="ray-src", Key="set/" + k)
                          ["ContentLength"] for k in dataset)
    assert len(r.nodes) == 2 and all(n["bytes"] > 0 for n in r.nodes), r.nodes
    assert sum(n["bytes"] for n in r.nodes) == r.bytes
    assert r.lost_workers == 0 and r.shard_retries == 0
    assert _pending_uploads(s3server, "ray-dst1") == []
    assert snaps and len(snaps[-1].nodes) == 2 and snaps[-1].listing_done


def test_api_copy_cluster_server_side(ray_cluster, s3server, dataset):
    import trunkline

    s3server.create_bucket("ray-dst2")
    r = trunkline.copy("s3://ray-src/set/", "s3://ray-dst2/", recursive=True,
                       cluster=ray_cluster.address, part_size="5M")
    assert r.ok, r.failures
    assert _s3_digests(s3server, "ray-dst2", "") == dataset


def test_s3_to_each_nodes_local_path(ray_cluster, s3server, dataset, tmp_path):
    from trunkline.cluster import copy_on_ray

    r = copy_on_ray("s3://ray-src/set/", str(tmp_path / "node-{node}") + "/", recursive=True,
                    cluster=ray_cluster.address, per_node_dest=True, part_size="5M",
                    shard_size="4M", shard_objects=6)
    assert r.ok, r.failures
    dirs = sorted(p for p in tmp_path.iterdir() if p.name.startswith("node-"))
    assert {d.name for d in dirs} == {f"node-{n['tag']}" for n in r.nodes}
    assert len(dirs) == 2
    got: dict[str, str] = {}
    per_node = {}
    for d in dirs:
        files = [p for p in d.rglob("*") if p.is_file()]
        per_node[d.name] = len(files)
        for p in files:
            rel = p.relative_to(d).as_posix()
            assert rel not in got, f"{rel} on two nodes"
            got[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    assert got == dataset
    assert all(n > 0 for n in per_node.values()), per_node   # both nodes received a share


def test_killing_a_worker_mid_run_still_completes(ray_cluster, s3server, dataset):
    from trunkline.cluster import copy_on_ray

    s3server.create_bucket("ray-dst3")
    killed: list[int] = []

    def on_progress(snap):
        # kill the first worker seen moving bytes, once it is well into its shard
        if killed:
            return
        for n in snap.nodes:
            if n.alive and n.done_bytes >= 2 * MiB:
                os.kill(n.pid, signal.SIGKILL)
                killed.append(n.pid)
                return

    # 8 MiB/s in total (4 per worker) makes the run last several seconds
    r = copy_on_ray("s3://ray-src/set/", "s3://ray-dst3/", recursive=True,
                    cluster=ray_cluster.address, part_size="5M", shard_size="6M",
                    shard_objects=8, server_side=False, bwlimit=8 * MiB,
                    on_progress=on_progress, tick=0.2)
    assert killed, "no worker was seen moving bytes"
    assert r.ok, r.failures
    assert r.lost_workers == 1 and r.shard_retries >= 1
    assert [n["alive"] for n in r.nodes].count(False) == 1
    assert _s3_digests(s3server, "ray-dst3", "") == dataset
    assert _pending_uploads(s3server, "ray-dst3") == []


def test_dry_run_schedules_without_moving(ray_cluster, s3server, dataset):
    from trunkline.cluster import copy_on_ray

    s3server.create_bucket("ray-dst4")
    r = copy_on_ray("s3://ray-src/set/", "s3://ray-dst4/", recursive=True,
                    cluster=ray_cluster.address, shard_objects=4, dry_run=True)
    assert r.ok and r.dry_run
    assert r.objects == len(dataset) and r.bytes == 0 and r.planned_parts >= len(dataset)
    assert s3server.client().list_objects_v2(Bucket="ray-dst4").get("KeyCount") == 0


def test_rerun_after_losing_every_worker_resumes(ray_cluster, s3server, dataset):
    from trunkline.cluster import copy_on_ray

    s3server.create_bucket("ray-dst5")
    killed: list[int] = []

    def kill_all(snap):
        # once whole shards are done (recorded in the ledger), lose every worker
        if not killed and snap.shards_done >= 1:
            for n in snap.nodes:
                os.kill(n.pid, signal.SIGKILL)
                killed.append(n.pid)

    kw = dict(recursive=True, cluster=ray_cluster.address, part_size="5M", shard_size="6M",
              shard_objects=8, server_side=False, bwlimit=8 * MiB, tick=0.2)
    r1 = copy_on_ray("s3://ray-src/set/", "s3://ray-dst5/", on_progress=kill_all, **kw)
    assert len(killed) == 2
    assert not r1.ok and "workers were lost" in str(r1.failures[-1]), r1.failures
    assert r1.lost_workers == 2
    r2 = copy_on_ray("s3://ray-src/set/", "s3://ray-dst5/", **kw)
    assert r2.ok, r2.failures
    assert r2.shards_skipped >= 1 and r2.skipped_objects >= 8     # the ledger's done shards
    assert r2.objects + r2.skipped_objects == len(dataset)       # each one moved or skipped
    assert _s3_digests(s3server, "ray-dst5", "") == dataset
    assert _pending_uploads(s3server, "ray-dst5") == []


def test_cli_cp_ray_json(ray_cluster, s3server, dataset, tmp_path):
    import json
    import subprocess

    s3server.create_bucket("ray-dst6")
    env = dict(os.environ)   # AWS_* of the s3server, the loopback Ray setting, state dir
    p = subprocess.run(
        [sys.executable, "-m", "trunkline.cli.main", "cp", "-r", "--json", "--part-size", "5M",
         "s3://ray-src/set/", "s3://ray-dst6/x/", "--ray", ray_cluster.address],
        capture_output=True, text=True, env=env, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["ok"] and out["objects"] == len(dataset) and len(out["nodes"]) == 2
    assert _s3_digests(s3server, "ray-dst6", "x/") == dataset


def test_cli_workers_per_node_runs_that_many_engines_on_each_node(ray_cluster, s3server,
                                                                 dataset, tmp_path):
    """``--workers-per-node 2``: two engine processes per node (one process is bound by its
    interpreter on small objects), each taking shards; every object lands once, intact."""
    import json
    import subprocess

    p = subprocess.run(
        [sys.executable, "-m", "trunkline.cli.main", "cp", "-r", "--json", "--part-size", "5M",
         "s3://ray-src/set/", str(tmp_path / "w-{node}") + "/", "--per-node-dest",
         "--workers-per-node", "2", "--ray", ray_cluster.address],
        capture_output=True, text=True, env=dict(os.environ), timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["ok"] and out["objects"] == len(dataset)
    workers = out["nodes"]
    assert len(workers) == 4 and len({w["pid"] for w in workers}) == 4
    assert len({w["node"] for w in workers}) == 2
    got: dict[str, str] = {}
    for d in tmp_path.glob("w-*"):
        for f in (f for f in d.rglob("*") if f.is_file()):
            rel = f.relative_to(d).as_posix()
            assert rel not in got, f"{rel} written twice"
            got[rel] = hashlib.sha256(f.read_bytes()).hexdigest()
    assert got == dataset


def test_losing_a_node_per_node_dest_moves_its_share_again(ray_cluster, s3server, dataset,
                                                           tmp_path):
    """Kill a whole node (its raylet and workers): with per-node destinations its finished
    shards lived on that node, so they run again on the survivor, which ends up holding
    the whole dataset. Runs last: it adds a fresh node back for nothing after it."""
    from trunkline.cluster import copy_on_ray

    gone: list[str] = []

    def lose_node(snap):
        if gone:
            return
        for n in snap.nodes:
            if n.alive and n.objects >= 6:
                for node in ray_cluster.list_all_nodes():
                    if node.node_id == n.node:
                        ray_cluster.remove_node(node, allow_graceful=False)
                        gone.append(n.node)
                        return

    r = copy_on_ray("s3://ray-src/set/", str(tmp_path / "n-{node}") + "/", recursive=True,
                    cluster=ray_cluster.address, per_node_dest=True, part_size="5M",
                    shard_size="4M", shard_objects=3, bwlimit=8 * MiB, tick=0.2,
                    on_progress=lose_node)
    try:
        assert gone, "no node finished a shard before the end"
        assert r.ok, r.failures
        assert r.lost_workers == 1 and r.shard_retries >= 1
        survivor = [n for n in r.nodes if n["alive"]]
        assert len(survivor) == 1
        d = tmp_path / f"n-{survivor[0]['tag']}"
        got = {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in d.rglob("*") if p.is_file() and not is_partial_name(p.name)}
        assert got == dataset
        assert r.objects == len(dataset)
    finally:
        ray_cluster.add_node(num_cpus=1, object_store_memory=80 * MiB,
                             resources={"trunkline_node_c": 1})


def test_split_object_server_side_copy(ray_cluster, s3server, dataset):
    """Same store at both ends: the nodes send UploadPartCopy ranges of the 26 MiB object
    into the driver's upload, and the driver completes it."""
    from trunkline.cluster import copy_on_ray

    s3server.create_bucket("ray-dst7")
    r = copy_on_ray("s3://ray-src/set/big/", "s3://ray-dst7/b/", recursive=True,
                    cluster=ray_cluster.address, part_size="5M", shard_size="10M")
    assert r.ok, r.failures
    assert r.objects == 1 and r.shards == 3          # parts 1-2, 3-4, 5-6 of 6
    assert _s3_digests(s3server, "ray-dst7", "b/") == {
        k[len("big/"):]: v for k, v in dataset.items() if k.startswith("big/")}
    assert _pending_uploads(s3server, "ray-dst7") == []
